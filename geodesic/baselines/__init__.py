"""Baselines the applications are compared against (one small module each)."""
