"""Typed settings parsed from ``params.yaml``: the one place where parameters are checked.

Each section of ``params.yaml`` is a dataclass whose fields carry a default, a help string and
the allowed values (``choices``, ``low``/``high`` bounds). :func:`parse` turns a plain mapping
into those dataclasses and fails on the first unknown key, wrong type or out-of-range value with
a :class:`ParamsError` naming the key, the value and what is allowed. A number is a finite value
of its declared type: NaN, +-inf, booleans, strings, nulls and lists where an ``int`` or a
``float`` is declared are refused by the same rule for every key. It needs no torch, so bad input
is rejected before anything heavy is imported.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import itertools
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml


class ParamsError(ValueError):
    """A parameter is unknown, of the wrong type, or outside what is allowed."""

    def __init__(self, key: str, value: Any, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"params: {key} = {value!r} is not allowed: {allowed}")


def setting(default: Any, help: str, *, choices: tuple | None = None, low: float | None = None,
            high: float | None = None, low_open: bool = False, high_open: bool = False):
    """A dataclass field with a help string and the allowed values (bounds apply per element)."""
    meta = dict(help=help, choices=choices, low=low, high=high, low_open=low_open,
                high_open=high_open)
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


def _check_type(key: str, value: Any, tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):  # Optional[X], X | None
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if value is None else _check_type(key, value, args[0])
    if origin is list:
        if not isinstance(value, list):
            raise ParamsError(key, value, f"a list of {typing.get_args(tp)[0].__name__}")
        return [_check_type(f"{key}[{i}]", v, typing.get_args(tp)[0]) for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ParamsError(key, value, f"a mapping with keys {', '.join(_names(tp))}")
        return parse_section(tp, value, key)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is bool and not isinstance(value, bool) or not isinstance(value, tp) or (
            tp is not bool and isinstance(value, bool)):
        raise ParamsError(key, value, f"a value of type {tp.__name__}")
    return value


def _bounds(meta: dict) -> str:
    """The bounds of ``meta`` as text, e.g. ``> 0.0 and < 1.0`` (empty when unbounded)."""
    parts = []
    if meta.get("low") is not None:
        parts.append(f"{'>' if meta['low_open'] else '>='} {meta['low']}")
    if meta.get("high") is not None:
        parts.append(f"{'<' if meta['high_open'] else '<='} {meta['high']}")
    return " and ".join(parts)


def _check_range(key: str, value: Any, meta: dict) -> None:
    values = value if isinstance(value, list) else [value]
    for v in values:
        if v is None:  # an optional setting left unset
            continue
        if isinstance(v, float) and not math.isfinite(v):
            raise ParamsError(key, v, f"a finite number {_bounds(meta)}".rstrip())
        if meta.get("choices") is not None and v not in meta["choices"]:
            raise ParamsError(key, v, f"one of {', '.join(map(str, meta['choices']))}")
        low, high = meta.get("low"), meta.get("high")
        if (low is not None and (v < low or (meta["low_open"] and v == low))) or (
                high is not None and (v > high or (meta["high_open"] and v == high))):
            raise ParamsError(key, v, _bounds(meta))


def _names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def parse_section(cls, data: dict, prefix: str = ""):
    """Build dataclass ``cls`` from ``data``, checking keys, types, ranges, then ``cls.validate``."""
    hints = typing.get_type_hints(cls)
    known = _names(cls)
    for key, new in getattr(cls, "RENAMED", {}).items():
        if key in data:
            raise ParamsError(f"{prefix}.{key}".lstrip("."), data[key],
                              f"the same value under its new name {prefix}.{new}")
    for key in data:
        if key not in known:
            raise ParamsError(f"{prefix}.{key}".lstrip("."), data[key],
                              f"a known key of {prefix or 'params'}: {', '.join(known)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        key = f"{prefix}.{f.name}".lstrip(".")
        value = _check_type(key, data[f.name], hints[f.name])
        _check_range(key, value, dict(f.metadata))
        kwargs[f.name] = value
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate(prefix)
    return obj


def to_dict(obj) -> dict:
    """The plain mapping of a settings dataclass (what ``params.yaml`` would hold)."""
    return dataclasses.asdict(obj)


def flatten(mapping: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``: the dotted keys that ``dvc exp run -S`` uses."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


# --- overrides: ``key=value`` specs (``dvc exp run -S``, sweeps) ----------------------------------

Point = dict[str, Any]


def parse_spec(spec: str) -> tuple[str, Any]:
    """``key=value`` -> (key, value), the value read as YAML (as ``dvc exp run -S`` reads it)."""
    key, sep, text = spec.partition("=")
    if not sep or not key.strip():
        raise ParamsError(spec, spec, "an override of the form key=value or key=[v1,v2,...]")
    try:
        return key.strip(), yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ParamsError(key, text, f"a YAML value ({exc.__class__.__name__})") from exc


def lookup(params: dict, key: str) -> Any:
    """The value at dotted ``key`` of the nested ``params``; unknown keys raise."""
    node: Any = params
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            raise UnknownKeyError(key, node, parts[:i + 1])
        node = node[part]
    return node


class UnknownKeyError(ParamsError):
    """A dotted key that names no parameter: the message gives the closest known key and
    every key of the section where the name went wrong."""

    def __init__(self, key: str, node: Any, parts: list[str]):
        prefix, wrong = ".".join(parts[:-1]), ".".join(parts)
        if isinstance(node, dict):
            known = [f"{prefix}.{k}" if prefix else k for k in node]
            close = difflib.get_close_matches(wrong, known, n=1)
            allowed = (f"a known parameter{f' (did you mean {close[0]}?)' if close else ''}; "
                       f"known here: {', '.join(known)}")
        else:
            allowed = f"a known parameter ({prefix} is a value, not a section)"
        self.key, self.value, self.allowed = key, None, allowed
        ValueError.__init__(self, f"params: {key} is not a parameter: {allowed}")


def grid(specs: list[str], params: dict) -> list[Point]:
    """The points that override ``specs`` describe, in order (the last key varies fastest):
    ``key=value`` the same value at every point, ``key=[v1,v2,...]`` one point per value.
    For a parameter that is itself a list (``train.seeds``), ``[0,1]`` is one value and
    ``[[0,1],[2,3]]`` two points."""
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


def load_yaml(path) -> dict:
    with open(path) as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ParamsError("params", data, "a mapping of sections")
    return data


# --- the settings every traversal shares ---------------------------------------------------

SOLVERS = ("qp", "cg", "penalty")
OUTPUTS = ("logits", "probs", "fisher")
DEVICES = ("auto", "cpu", "cuda")
CG_MODES = ("trust_region", "output_basis", "rescale")


@dataclass
class GeodesicSettings:
    """Settings shared by every traversal: the metric, the step solver and the bookkeeping."""

    solver: str = setting("cg", "step solver", choices=SOLVERS)
    eta: float = setting(0.05, "Euclidean length of each step", low=0.0, low_open=True)
    beta: float = setting(1.0, "weight of the objective's direction", low=0.0, low_open=True)
    output: str = setting("logits", "output space of the metric", choices=OUTPUTS)
    metric_batch: int = setting(256, "inputs the metric averages over", low=1)
    cg_iters: int = setting(6, "Lanczos / conjugate-gradient iterations per step (cg): metric "
                            "products per step", low=1)
    damping: float = setting(1e-3, "damping lambda of g + lambda I (cg)", low=0.0, low_open=True)
    cg_mode: str = setting("output_basis", "cg: exact Krylov trust-region step with the basis in "
                           "output space (memory of one product) or in weight space "
                           "(trust_region: k n-vectors), or CG then rescaling to eta",
                           choices=CG_MODES)
    qp_iters: int = setting(20, "inner iterations of the constrained solve (qp)", low=1)
    penalty_length_batch: int = setting(32, "penalty: inputs of the metric batch (its first ones) "
                                        "on which a step's functional length "
                                        "sqrt(theta^T g theta) is measured for the record; "
                                        "0: the whole batch", low=0)
    max_steps: int = setting(2000, "step budget of the whole traversal", low=0)
    eval_every: int = setting(10, "held-out evaluation every k steps", low=1)
    checkpoint_every: int = setting(50, "path checkpoint every k steps", low=1)
    device: str = setting("auto", "auto picks CUDA when available", choices=DEVICES)
    amp: bool = setting(False, "CUDA autocast (bfloat16/float16) of the metric's forward passes; "
                        "products and solver state stay float32; no effect on the CPU")
    compile: bool = setting(False, "torch.compile the per-layer tangent recursion of the metric "
                            "products (first product compiles; slower than eager on the CPU)")

    def metric_options(self) -> dict:
        """Keyword arguments of :class:`~geodesic.core.metric.FunctionalMetric` set here."""
        return {"amp": self.amp, "compile": self.compile}
