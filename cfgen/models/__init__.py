"""cfgen.models."""
