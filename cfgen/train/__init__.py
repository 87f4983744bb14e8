"""cfgen.train."""
