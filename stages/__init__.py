"""DVC stage entry points: ``python -m stages.<name>`` reads ``params.yaml``, calls the library,
writes the stage's outputs and records the run in MLflow. No mathematics lives here."""
