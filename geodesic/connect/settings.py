"""Settings of application (iii), the ``connect`` section of params.yaml."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from geodesic.core.settings import GeodesicSettings, ParamsError, setting

CURVE_NAMES = ("linear", "bezier", "aligned", "bezier_aligned")
GEODESIC_NAMES = ("geodesic", "geodesic_aligned")
ANCHOR_TARGETS = ("w2", "interpolated")
# method -> {setting: the key that replaces it for that method when set}
OWN_VALUES = {"geodesic_aligned": {"eta": "aligned_eta", "anchor": "aligned_anchor",
                                   "cg_iters": "aligned_cg_iters",
                                   "constant_pull": "aligned_constant_pull",
                                   "anchor_target": "aligned_anchor_target"},
              "bezier_aligned": {"bezier_lr": "bezier_aligned_lr",
                                 "bezier_momentum": "bezier_aligned_momentum"}}


@dataclass
class ConnectSettings(GeodesicSettings):
    """Application (iii): a high-accuracy path between two independently trained networks."""

    RENAMED: ClassVar[dict[str, str]] = {"function_pull": "anchor"}

    seeds: list[int] = setting([0, 1], "the two base networks: from seeds[0] to seeds[1]", low=0)
    cg_iters: int = setting(10, "Lanczos iterations per step (cg); fewer cost more steps in all "
                            "here (bench/README.md)", low=1)
    eps: float = setting(0.01, "stop within eps * ||w1 - w2|| of w2 (then a straight segment "
                         "joins w2)", low=0.0, high=1.0, low_open=True, high_open=True)
    anchor: float = setting(0.0, "alpha: v = (w2 - w) - alpha grad D2(w), D2 the output "
                            "distance to w2 on the metric batch (0: v = w2 - w alone)", low=0.0)
    constant_pull: bool = setting(False, "v = ||w1 - w2|| (w2 - w) / ||w2 - w||: the pull toward "
                                  "w2 keeps its strength as the walk nears it (false: v = w2 - "
                                  "w, the paper's, whose steps shrink with the distance left)")
    anchor_target: str = setting("w2", "the outputs the anchor pulls toward: w2 (w2's, D2 "
                                 "above) or interpolated ((1 - t) f(x; w1) + t f(x; w2), t the "
                                 "walk's progress 1 - ||w2 - w|| / ||w2 - w1||)",
                                 choices=ANCHOR_TARGETS)
    seed: int = setting(0, "seed of the metric batches and of the Bezier training", low=0)
    geodesics: list[str] = setting(list(GEODESIC_NAMES), "geodesics walked: geodesic from w1 to "
                                   "w2 (the paper's), geodesic_aligned from w1 to pi(w2), w2 "
                                   "with its hidden units permuted to match w1 by weight "
                                   "matching (the same function)", choices=GEODESIC_NAMES)
    baselines: list[str] = setting(list(CURVE_NAMES), "curves compared with the geodesics: the "
                                   "straight line and the trained quadratic Bezier curve to w2 "
                                   "(linear, bezier) and to pi(w2) (aligned, bezier_aligned)",
                                   choices=CURVE_NAMES)
    points: int = setting(21, "N: evaluation points along each baseline curve", low=2)
    bn_inputs: int = setting(2048, "training inputs from which BatchNorm statistics are "
                             "recomputed at every evaluated point (0: all)", low=0)
    bezier_steps: int = setting(500, "SGD steps training the Bezier middle point (one gradient "
                                "evaluation each)", low=0)
    bezier_batch: int = setting(256, "minibatch of the Bezier training", low=1)
    bezier_lr: float = setting(0.05, "learning rate of the Bezier training", low=0.0,
                               low_open=True)
    bezier_momentum: float = setting(0.9, "SGD momentum of the Bezier training", low=0.0,
                                     high=1.0, high_open=True)
    bezier_weight_decay: float = setting(0.0, "weight decay on phi(t) in the Bezier training",
                                         low=0.0)
    aligned_eta: float | None = setting(None, "eta of geodesic_aligned (null: eta)", low=0.0,
                                        low_open=True)
    aligned_anchor: float | None = setting(None, "anchor of geodesic_aligned (null: anchor)",
                                           low=0.0)
    aligned_cg_iters: int | None = setting(None, "cg_iters of geodesic_aligned (null: "
                                           "cg_iters)", low=1)
    aligned_constant_pull: bool | None = setting(None, "constant_pull of geodesic_aligned "
                                                 "(null: constant_pull)")
    aligned_anchor_target: str | None = setting(None, "anchor_target of geodesic_aligned "
                                                "(null: anchor_target)",
                                                choices=ANCHOR_TARGETS)
    bezier_aligned_lr: float | None = setting(None, "bezier_lr of bezier_aligned (null: "
                                              "bezier_lr)", low=0.0, low_open=True)
    bezier_aligned_momentum: float | None = setting(None, "bezier_momentum of bezier_aligned "
                                                    "(null: bezier_momentum)", low=0.0,
                                                    high=1.0, high_open=True)
    cpu_threads: int = setting(0, "torch CPU threads (0: torch's default)", low=0)
    plane_grid: int = setting(15, "lattice size of the test-accuracy landscape drawn on the "
                              "plane of (w1, w2, Bezier middle point); 0: no landscape", low=0)

    def for_method(self, name: str) -> "ConnectSettings":
        """These settings as method ``name`` runs with them: its own values (``OWN_VALUES``)
        where they are set, the shared ones elsewhere."""
        own = {key: getattr(self, field) for key, field in OWN_VALUES.get(name, {}).items()
               if getattr(self, field) is not None}
        return dataclasses.replace(self, **own) if own else self

    def validate(self, prefix: str) -> None:
        if len(self.seeds) != 2 or self.seeds[0] == self.seeds[1]:
            raise ParamsError(f"{prefix}.seeds", self.seeds, "two distinct seeds of train.seeds")
        if len(set(self.baselines)) != len(self.baselines):
            raise ParamsError(f"{prefix}.baselines", self.baselines, "distinct curve names")
        if len(set(self.geodesics)) != len(self.geodesics):
            raise ParamsError(f"{prefix}.geodesics", self.geodesics, "distinct geodesic names")
        if not self.geodesics and not self.baselines:
            raise ParamsError(f"{prefix}.geodesics", self.geodesics, "at least one method "
                              "(connect.baselines is empty too)")
