"""Sweep points from override specs, checked against the settings before anything runs.

    key=value           the same value at every point
    key=[v1,v2,...]     one point per value; several such keys give their grid (product)

Values are YAML, as ``dvc exp run -S`` reads them. For a parameter that is itself a list
(``train.seeds``), ``[0,1]`` is one value and ``[[0,1],[2,3]]`` two points. Every point is
applied to ``params.yaml`` and parsed by :func:`geodesic.params.parse_params`, so a typo or an
out-of-range value stops the sweep with the same message a stage would give, before any compute.
"""
from __future__ import annotations

import copy
import itertools
from pathlib import Path

import yaml

from geodesic.params import parse_params
from geodesic.settings import ParamsError, load_yaml, to_dict

Point = dict[str, object]


def parse_spec(spec: str) -> tuple[str, object]:
    key, sep, text = spec.partition("=")
    if not sep or not key.strip():
        raise ParamsError(spec, spec, "an override of the form key=value or key=[v1,v2,...]")
    try:
        return key.strip(), yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ParamsError(key, text, f"a YAML value ({exc.__class__.__name__})") from exc


def lookup(params: dict, key: str) -> object:
    node: object = params
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ParamsError(key, None, "a known parameter (see params.yaml and "
                              "geodesic/params.py)")
        node = node[part]
    return node


def grid(specs: list[str], params: dict) -> list[Point]:
    """The points that ``specs`` describe, in order (the last key varies fastest)."""
    keys, choices = [], []
    for spec in specs:
        key, value = parse_spec(spec)
        current = lookup(params, key)
        is_list_param = isinstance(current, list)
        several = isinstance(value, list) and (not is_list_param or all(
            isinstance(v, list) for v in value))
        keys.append(key)
        choices.append(value if several else [value])
    return [dict(zip(keys, combo)) for combo in itertools.product(*choices)]


def apply(params: dict, point: Point) -> dict:
    """A copy of the nested ``params`` with the dotted keys of ``point`` set."""
    out = copy.deepcopy(params)
    for key, value in point.items():
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def effective_params(params_file: str | Path) -> dict:
    """``params.yaml`` with every default filled in (what the stages see)."""
    return to_dict(parse_params(load_yaml(params_file)))


def expand(specs: list[str] | None, points: list[Point] | None,
           params_file: str | Path) -> list[Point]:
    """The grid of ``specs`` followed by the explicit ``points``; each checked."""
    raw = load_yaml(params_file)
    full = effective_params(params_file)
    out = grid(specs, full) if specs else []
    out += [dict(p) for p in points or []]
    if not out:
        raise ParamsError("sweep", specs, "at least one override (key=[v1,v2,...]) or point")
    for point in out:
        for key in point:
            lookup(full, key)
        parse_params(apply(raw, point))
    return out


def describe(point: Point) -> str:
    return ", ".join(f"{k}={v}" for k, v in point.items())
