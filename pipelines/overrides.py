"""Sweep points from override specs, checked against the settings before anything runs.

    key=value           the same value at every point
    key=[v1,v2,...]     one point per value; several such keys give their grid (product)

Values are YAML, as ``dvc exp run -S`` reads them (the grammar: :func:`geodesic.core.settings.grid`).
Every point is applied to ``params.yaml`` and parsed by :func:`geodesic.params.parse_params`, so
a typo or an out-of-range value stops the sweep with the same message a stage would give, before
any compute.
"""
from __future__ import annotations

import random
import re
import time
from pathlib import Path

from geodesic.core.settings import ParamsError, Point, grid, to_dict
from geodesic.params import check_point, load_params


def effective_params(params_file: str | Path) -> dict:
    """``params.yaml`` with every default filled in (what the stages see)."""
    return to_dict(load_params(params_file))


def expand(specs: list[str] | None, points: list[Point] | None,
           params_file: str | Path) -> list[Point]:
    """The grid of ``specs`` followed by the explicit ``points``; each checked."""
    full = effective_params(params_file)
    out = grid(specs, full) if specs else []
    out += [dict(p) for p in points or []]
    if not out:
        raise ParamsError("sweep", specs, "at least one override (key=[v1,v2,...]) or point")
    for point in out:
        check_point(point, full)
    return out


def describe(point: Point) -> str:
    return ", ".join(f"{k}={v}" for k, v in point.items())


SWEEP_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,40}$")


def new_sweep_id() -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{random.randbytes(2).hex()}"


def check_sweep_id(sweep_id: str) -> str:
    if not SWEEP_ID.match(sweep_id):
        raise ParamsError("sweep_id", sweep_id, "lowercase letters, digits and dashes")
    return sweep_id
