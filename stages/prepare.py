"""Stage ``prepare``: materialise the dataset splits named in ``params.yaml`` (section ``data``)
as one safetensors file that every later stage reads, from the raw files the ``download``
stage wrote to ``data.root``."""
from __future__ import annotations

from geodesic import tracking
from geodesic.common.data import load_dataset, save_dataset
from geodesic.core.io import write_json
from geodesic.params import Params
from stages.common import DATASET, main, params_dict


def prepare(params: Params) -> None:
    d = params.data
    with tracking.stage_run("prepare", params_dict(params, "data"),
                            preset=params.preset.label):
        ds = load_dataset(d.name, d.root, d.val_fraction, d.seed, d.train_limit, d.test_limit,
                          d.size)
        save_dataset(ds, DATASET)
        summary = {"name": ds.name, "num_classes": ds.num_classes, "in_shape": list(ds.in_shape),
                   "train": len(ds.train), "val": len(ds.val), "test": len(ds.test)}
        write_json(DATASET.with_name("summary.json"), summary)
        tracking.log_metrics({k: v for k, v in summary.items() if isinstance(v, int)})


if __name__ == "__main__":
    main(prepare)
