"""Application (i), sparsification: from a dense network to p-sparse ones along a path that
keeps its function; the objective, masks, pruning baselines, run and settings."""
