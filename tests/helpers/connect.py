"""Connect settings of the tests: short walks and curves on the digits MLP."""
import dataclasses

from geodesic.connect.settings import ConnectSettings


def settings(**overrides) -> ConnectSettings:
    base = dict(eta=0.5, cg_iters=10, metric_batch=256, eps=0.01, max_steps=300, eval_every=2,
                anchor=3.0, points=11, bn_inputs=0, bezier_steps=200, plane_grid=0)
    return dataclasses.replace(ConnectSettings(), **{**base, **overrides})
