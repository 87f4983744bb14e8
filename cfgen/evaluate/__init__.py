"""cfgen.evaluate."""
