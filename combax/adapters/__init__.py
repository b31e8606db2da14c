"""The joints between solvers and models: solver calls inside training, cost tables from real models,
weight surgery, export and timing."""
