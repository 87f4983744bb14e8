"""cfgen.explain."""
