"""The mathematics, knowing no application, data set or MLOps tool: the functional metric and
its per-layer fast products, the step solvers, the traversal loop, paths and checkpoints, the
objective interface with its generic parts, and data-parallel products."""
