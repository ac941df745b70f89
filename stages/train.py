"""Stage ``train``: one base network per seed in ``train.seeds`` (mode connectivity needs two),
written to ``models/seed<N>.safetensors`` and registered in MLflow as ``base-<dataset>`` with the
alias ``<model>-seed<N>``; ``metrics/train.json`` holds their test accuracy."""
from __future__ import annotations

import logging
import statistics

import torch

from geodesic import tracking
from geodesic.common.train import train
from geodesic.core.io import save_tensors
from geodesic.params import Params
from stages.common import (DATASET, checkpoint_dir, main, model_file, params_dict, start,
                           write_metrics)

log = logging.getLogger("stages.train")


def train_stage(params: Params) -> None:
    t = params.train
    device, data = start(t)
    results = {}
    ckpt = checkpoint_dir("train", params, ("model", "train"), (DATASET.parent,))
    with tracking.stage_run("train", params_dict(params, "data", "model", "train"),
                            preset=params.preset.label):
        for seed in t.seeds:
            with tracking.method_run(f"seed{seed}", {"seed": seed}):
                torch.manual_seed(seed)
                model = params.model.build(data.in_shape, data.num_classes)
                result = train(model, data, t, seed, device=device, directory=ckpt / f"seed{seed}",
                               on_epoch=lambda r, m: tracking.log_metrics(r, step=r["epoch"]))
                save_tensors(model_file(seed), model.state_dict())
                tracking.log_metrics({"test_acc": result.test_acc, "test_loss": result.test_loss,
                                      "seconds": result.seconds})
                tracking.log_artifact(model_file(seed), "model")
                tracking.register_model(model, data.test.x[:8], f"base-{params.data.name}",
                                        alias=f"{params.model.name}-seed{seed}")
            log.info("seed %d: test accuracy %.4f in %.1fs", seed, result.test_acc,
                     result.seconds)
            results[str(seed)] = {"test_acc": result.test_acc, "test_loss": result.test_loss,
                                  "val_acc": result.val_acc, "seconds": result.seconds}
        accs = [r["test_acc"] for r in results.values()]
        summary = {"test_acc_mean": statistics.mean(accs), "test_acc_min": min(accs),
                   "seeds": results}
        write_metrics("train", summary)
        tracking.log_metrics({"test_acc_mean": summary["test_acc_mean"]})


if __name__ == "__main__":
    main(train_stage)
