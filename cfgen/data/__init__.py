"""cfgen.data."""
