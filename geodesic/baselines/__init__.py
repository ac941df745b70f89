"""Baselines the geodesic applications are compared against (one small module each)."""
