"""Baselines the geodesic paths are compared against (one small module per application)."""
