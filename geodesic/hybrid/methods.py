"""The hybrid application's methods by the names of ``params.yaml``:
``name -> (context, directory, callbacks) -> {level name: LevelResult}``. The geodesic runs first;
it sets the per-level budgets the baselines get."""
from __future__ import annotations

from geodesic.core.registry import Registry
from geodesic.hybrid.baselines import finetune_prune_finetune, prune_finetune
from geodesic.hybrid.run import geodesic

HYBRID_METHODS: Registry = Registry("hybrid method")
HYBRID_METHODS.register("geodesic")(geodesic)
HYBRID_METHODS.register("prune_finetune")(prune_finetune)
HYBRID_METHODS.register("finetune_prune_finetune")(finetune_prune_finetune)
