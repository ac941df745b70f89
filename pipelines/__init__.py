"""Orchestration: the DVC pipeline as Prefect flows, recorded in MLflow.

    project.py    the DVC project: stages in DVC's order, one stage, metrics, experiments
    reproduce.py  flow ``reproduce``: one task per stage, retries for transient failures
    sweep.py      flow ``sweep``: overrides -> DVC experiments -> comparison table
    overrides.py  sweep points from ``key=[v1,v2]`` specs, checked against the settings
    report.py     the comparison table (markdown, CSV) and its plot
    serve.py      deployments: served from one machine, or pulled from git by pool workers
    bench.py      the figures: flow overhead, MLflow logging share, no-op ``dvc repro`` time
    servers.py    local servers for a while: a free port, waiting until one answers
    __main__.py   the ``geodesic`` command line

Flows and the command line contain no mathematics and no stage logic: they call DVC, which
calls the stages, which call the library.
"""
