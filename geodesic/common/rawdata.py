"""A data set's raw files, fetched into one folder, checked and described by a manifest.

``fetch(name, source, root, downloads)`` puts data set ``name``'s files under ``root`` in
torchvision's layout, copied from the folder ``source`` (the same layout), or, when ``source`` is
``torchvision``, from the folder ``downloads`` into which torchvision downloads them once (kept
between runs, so a rerun re-checks the files without downloading them again). It then reads them back through the data set's loader
(:data:`geodesic.common.data.DATASETS`: the format), checks the counts (as many labels as images, every
label a class id, every class present in the training split) and writes ``root/manifest.json``:

    {"name", "num_classes", "train", "test", "train_classes", "test_classes",
     "files": {path: {"size", "sha256"}}, "sha256"}

``sha256`` is the digest of the files' digests (of the images and labels for ``digits``, which
scikit-learn bundles: no file is fetched and the manifest alone describes the data). The
manifest holds the content alone, not where it came from: the same files from another source
give the same output.
"""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import torch

from geodesic.common.data import DATASETS, TORCHVISION, Raw, Split, download
from geodesic.core.io import write_json

DOWNLOAD = "torchvision"
MANIFEST = "manifest.json"


class RawDataError(ValueError):
    """The raw files are missing, unreadable, or their counts do not add up."""


def fetch(name: str, source: str, root: str | Path, downloads: str | Path) -> dict:
    """Fetch, check and describe data set ``name``'s raw files under ``root``; returns the
    manifest it writes to ``root/manifest.json``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict] = {}
    if name in TORCHVISION:
        spec = TORCHVISION[name]
        if source == DOWNLOAD:
            source = str(downloads)
            try:
                download(name, Path(downloads))
            except FileNotFoundError as err:
                raise RawDataError(str(err)) from err
        _copy(Path(source), root, [f"{spec.folder}/{f}" for f in spec.files])
        files = {f"{spec.folder}/{f}": file_digest(root / spec.folder / f) for f in spec.files}
    try:
        raw = DATASETS.get(name)(root)
    except FileNotFoundError as err:
        raise RawDataError(f"{name}: the files under {root} are not readable: {err}") from err
    counts = check_counts(name, raw)
    digest = hashlib.sha256()
    if files:
        for path, entry in sorted(files.items()):
            digest.update(f"{path} {entry['sha256']}\n".encode())
    else:
        for split in (raw.train, raw.test):
            digest.update(split.x.contiguous().numpy().tobytes())
            digest.update(split.y.contiguous().numpy().tobytes())
    manifest = {"name": name, **counts, "files": files, "sha256": digest.hexdigest()}
    write_json(root / MANIFEST, manifest)
    return manifest


def file_digest(path: Path) -> dict:
    """{"size", "sha256"} of a file."""
    data = path.read_bytes()
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def check_counts(name: str, raw: Raw) -> dict:
    """The counts of ``raw``; raises :class:`RawDataError` when they do not add up."""
    counts = {"num_classes": raw.num_classes}
    for part in ("train", "test"):
        split: Split = getattr(raw, part)
        if len(split.x) != len(split.y) or len(split.y) == 0:
            raise RawDataError(f"{name}: the {part} split has {len(split.x)} images and "
                               f"{len(split.y)} labels (allowed: equal counts, at least one)")
        bad = split.y[(split.y < 0) | (split.y >= raw.num_classes)]
        if len(bad):
            raise RawDataError(f"{name}: {part} label {int(bad[0])} is not a class id "
                               f"(allowed: 0..{raw.num_classes - 1})")
        per_class = torch.bincount(split.y, minlength=raw.num_classes).tolist()
        if part == "train" and 0 in per_class:
            raise RawDataError(f"{name}: class {per_class.index(0)} has no training image "
                               f"(allowed: every class of 0..{raw.num_classes - 1})")
        counts[part], counts[f"{part}_classes"] = len(split.y), per_class
    return counts


def _copy(source: Path, root: Path, files: list[str]) -> None:
    missing = [f for f in files if not (source / f).is_file()]
    if missing:
        raise RawDataError(f"data.source = {str(source)!r} lacks {', '.join(missing)} (allowed: "
                           f"'{DOWNLOAD}', or a folder holding {', '.join(files)})")
    for f in files:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / f, root / f)
