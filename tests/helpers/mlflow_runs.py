"""Reading the run trees that flows and stages leave in an MLflow store."""
from mlflow.tracking import MlflowClient


def children(client: MlflowClient, parent_id: str) -> list:
    """The runs, in every experiment, whose parent is the run ``parent_id``."""
    return client.search_runs([e.experiment_id for e in client.search_experiments()],
                              f"tags.mlflow.parentRunId = '{parent_id}'")
