"""Application (iii), mode connectivity: a high-accuracy path between two independently trained
networks; the objective, permutation alignment, curve baselines, run, report and settings."""
