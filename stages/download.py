"""Stage ``download``: the raw files of the data set named in ``params.yaml`` (``data.name``)
under ``data.root``, a DVC output (cached, ``dvc push``-able). ``data.source`` says where they
come from: ``torchvision`` downloads them; a folder in torchvision's layout (e.g.
``../shared/data/mnist-real``, relative to the project root) is copied. The files are checked
(read back, counts) and described by ``<data.root>/manifest.json`` with their sha256
(:mod:`geodesic.common.rawdata`); for ``digits``, bundled with scikit-learn, the manifest alone.
``prepare`` depends on this output, so changed raw files rerun everything downstream.

DVC cannot see a folder outside the project change, so the stage is ``always_changed``: every
``dvc repro`` copies and checks the files again (seconds; downloads are kept in
``data/torchvision`` and not repeated), and the stages after it rerun only when the files differ.

    python -m stages.download
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path, PurePosixPath

from geodesic import tracking
from geodesic.common.rawdata import DOWNLOAD, MANIFEST, RawDataError, fetch
from geodesic.core.settings import ParamsError
from geodesic.params import Params
from stages.common import main

log = logging.getLogger("stages.download")
DOWNLOADS = Path("data/torchvision")  # torchvision's downloads, kept between runs


def download_stage(params: Params) -> None:
    d = params.data
    parts = PurePosixPath(d.root).parts
    if not parts or d.root.startswith(("/", "~")) or ".." in parts:
        raise ParamsError("data.root", d.root, "a relative folder inside the project (the "
                          "download stage's DVC output, e.g. data/raw); name a folder elsewhere "
                          "as data.source")
    with tracking.stage_run("download", {"data": {"name": d.name, "source": d.source,
                                                  "root": d.root}},
                            preset=params.preset.label):
        shutil.rmtree(d.root, ignore_errors=True)
        source = d.source  # a relative folder: from the project root, also in `dvc exp --temp`
        if source != DOWNLOAD and not Path(source).is_absolute():
            source = str(tracking.project_root() / source)
        try:
            manifest = fetch(d.name, source, d.root, DOWNLOADS)
        except RawDataError as exc:
            raise ParamsError("data.source", d.source, str(exc)) from exc
        tracking.log_metrics({"train": manifest["train"], "test": manifest["test"]})
        tracking.log_artifact(Path(d.root) / MANIFEST, "data")
    log.info("%s: %d train / %d test images from %s, sha256 %s", d.name, manifest["train"],
             manifest["test"], source if manifest["files"] else "scikit-learn",
             manifest["sha256"][:16])


if __name__ == "__main__":
    main(download_stage)
