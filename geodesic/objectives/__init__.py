"""Objectives: what a traversal moves toward (see :mod:`geodesic.objectives.base`)."""
from geodesic.objectives.base import Anchor, Combined, Objective, TowardTarget

__all__ = ["Anchor", "Combined", "Objective", "TowardTarget"]
