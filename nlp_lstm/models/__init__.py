"""Neural network modules. Imports nothing from `training` or `tasks`."""
