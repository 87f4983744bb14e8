"""cfgen: explain image classifiers with counterfactuals (Progressive Exaggeration)."""

__version__ = "0.1.0"
