"""The generic trainer shared by every task: optimisation, budgets, checkpoints, monitoring."""
