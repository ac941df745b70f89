"""Presets: ``params.yaml`` composed from ``conf/`` exactly as ``dvc exp run`` composes it.

With ``hydra.enabled`` in ``.dvc/config``, every ``dvc exp run`` rewrites ``params.yaml`` from
``conf/config.yaml`` (its defaults list of groups ``data``, ``model``, ``scale`` and the
optional specialisations ``scale_model`` and ``tuned``) and the ``-S`` overrides, through DVC's
own :func:`dvc.utils.hydra.compose_and_dump`. :func:`compose` calls that same function, so what
it returns is what DVC writes; :func:`write` composes, checks the result with
:func:`geodesic.params.parse_params` and only then replaces the file (``geodesic compose``).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import yaml

from geodesic.core.settings import ParamsError
from geodesic.params import parse_params

CONFIG_DIR = "conf"
CONFIG_NAME = "config"
GROUPS = ("data", "model", "scale")


def options(group: str, root: str | Path = ".") -> list[str]:
    """The preset names of ``group``: the files ``conf/<group>/<name>.yaml``."""
    return sorted(p.stem for p in (Path(root) / CONFIG_DIR / group).glob("*.yaml"))


def check_choices(overrides: list[str], root: str | Path = ".") -> None:
    """A ``group=name`` override must name a file of that group (before Hydra's longer error)."""
    for spec in overrides:
        key, sep, value = spec.partition("=")
        if sep and key.strip() in GROUPS and value.strip() not in options(key.strip(), root):
            raise ParamsError(key.strip(), value.strip(), "a preset of conf/"
                              f"{key.strip()}/: {', '.join(options(key.strip(), root))}")


def compose_to(path: str | Path, overrides: list[str] = (), root: str | Path = ".") -> None:
    """Write the composition of ``root/conf`` with ``overrides`` (Hydra override strings, as
    ``dvc exp run -S`` passes them) to ``path``, through DVC's own composition."""
    from dvc.utils.hydra import compose_and_dump
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    root = Path(root).resolve()
    check_choices(list(overrides), root)
    try:
        compose_and_dump(str(path), str(root / CONFIG_DIR), None, CONFIG_NAME, str(root),
                         list(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        reason = " ".join(str(exc).split())
        raise ParamsError("overrides", list(overrides), "keys of conf/config.yaml and presets "
                          f"of {', '.join(GROUPS)} (Hydra: {reason})") from exc


def compose(overrides: list[str] = (), root: str | Path = ".") -> dict:
    """The mapping ``dvc exp run -S <overrides>`` would write to ``params.yaml``."""
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "params.yaml"
        compose_to(target, overrides, root)
        return yaml.safe_load(target.read_text())


def write(path: str | Path, overrides: list[str] = (), root: str | Path = ".") -> dict:
    """Compose, check the result as params, then write it to ``path``; returns the mapping.
    Bad overrides or values leave ``path`` as it was."""
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "params.yaml"
        compose_to(target, overrides, root)
        text = target.read_text()
    params = yaml.safe_load(text)
    parse_params(params)
    Path(path).write_text(text)
    return params
