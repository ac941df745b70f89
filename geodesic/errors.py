"""Errors that entry points turn into one-line messages and exit codes (no heavy imports)."""


class TrackingUnavailable(RuntimeError):
    """The MLflow tracking server named by MLFLOW_TRACKING_URI does not answer."""
