"""Tasks: what to build from a config, what to optimise, how to score."""
