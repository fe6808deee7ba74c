"""flowtaskd."""
