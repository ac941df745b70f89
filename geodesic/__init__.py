"""Weight-space geodesics: paths that keep a network's function while reaching a second goal.

Implements Raghavan & Thomson, *Solving hybrid machine learning tasks by traversing weight
space geodesics* (arXiv 2106.02793). Pure PyTorch: nothing here imports DVC, MLflow or Prefect
except :mod:`geodesic.tracking` and :mod:`geodesic.tracking_sync`.
"""

__version__ = "0.1.0"
