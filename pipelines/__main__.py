"""The command line: ``geodesic <command>`` or ``python -m pipelines <command>``.

    geodesic repro [STAGE ...]               the DVC pipeline as a Prefect flow
    geodesic sweep -S 'sparsify.solver=[cg,qp,penalty]'   parameter sweep, DVC experiments
    geodesic serve [--cron '0 3 * * *']     serve both flows, the sweep on a schedule
    geodesic deploy --pool P --source GIT   deployments that workers on other machines run
    geodesic ui [--prefect]                  the MLflow UI (or the Prefect server) on 127.0.0.1
    geodesic sync [--to URI]                 upload the runs recorded offline to the server
    geodesic tune sparsify [--trials 20]     every method's hyperparameters on validation
    geodesic results sparsify --preset data=mnist_real   the table over 3 seeds, DVC experiments
    geodesic compose -S data=mnist_real -S model=vgg11_bn   params.yaml from the conf/ presets
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from geodesic.core.settings import ParamsError
from geodesic.errors import TrackingUnavailable
from pipelines.cli import parser
from pipelines.project import CommandFailed, SweepFailed

def _point(text: str) -> dict:
    from geodesic.core.settings import parse_spec
    return dict(parse_spec(item) for item in text.split())


def _print(result: dict) -> None:
    print(json.dumps(result, indent=2, default=str))


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    project = str(Path(args.project).resolve())
    os.environ.setdefault("PREFECT_HOME", str(Path(project) / ".prefect"))
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if getattr(args, "system_metrics", False):
        os.environ["MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"] = "true"
    try:
        if args.command == "repro":
            from pipelines.flows import reproduce
            result = reproduce(project=project, stages=args.stages or None, force=args.force)
            _print(result["metrics"])
        elif args.command == "sweep":
            from pipelines.overrides import check_sweep_id, expand, new_sweep_id
            from pipelines.serve import schedule
            _, overrides, metrics = schedule(project)  # params.yaml's sweep section
            given = bool(args.overrides or args.point)
            overrides = args.overrides if given else overrides
            points = [_point(p) for p in args.point]
            sweep_id = check_sweep_id(args.sweep_id or new_sweep_id())
            expand(overrides, points, Path(project) / "params.yaml")  # before Prefect starts
            from prefect import tags as prefect_tags

            from pipelines.flows import sweep
            with prefect_tags("sweep", f"sweep:{sweep_id}"):
                result = sweep(overrides=overrides, points=points, project=project,
                               sweep_id=sweep_id, metrics=args.metrics or (
                                   None if given else metrics),
                               plot_metric=args.plot_metric, force=args.force)
            print(result["table"])
        elif args.command == "serve":
            from pipelines.serve import serve
            serve(project, args.cron, args.overrides, args.limit)
        elif args.command == "deploy":
            from pipelines.serve import deploy
            env = dict(item.split("=", 1) for item in args.env)
            _print(deploy(args.source, args.pool, args.ref, args.cron, args.overrides, env,
                          project, args.name))
        elif args.command == "ui":
            return _ui(project, args.port, args.prefect)
        elif args.command == "tune":
            from pipelines.tune import check_request, tune
            from geodesic.params import load_params
            check_request(args.application, load_params(Path(project) / "params.yaml"),
                          args.methods, args.trials, args.sequences)  # before Prefect starts
            result = tune(project=project, application=args.application, trials=args.trials,
                          methods=args.methods, seed=args.seed, sequences=args.sequences)
            _print({m: r["best"] for m, r in result["methods"].items()})
        elif args.command == "results":
            from pipelines.results import check_request, preset_overrides, results
            check_request(args.application, args.seeds)
            preset_overrides(args.preset)
            doc = results(project=project, application=args.application, seeds=args.seeds,
                          preset=args.preset)
            from pipelines.results_table import markdown
            print(markdown(doc))
        elif args.command == "sync":
            return _sync(Path(project), args.to, args.include_running)
        elif args.command == "compose":
            return _compose(Path(project), args.overrides, args.output)
    except ParamsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TrackingUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except (CommandFailed, SweepFailed) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _compose(project: Path, overrides: list[str], output: str) -> int:
    import tempfile

    from pipelines.presets import write
    if output != "-":
        write(project / output, overrides, project)
        print(f"wrote {project / output}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        write(Path(tmp) / "params.yaml", overrides, project)
        print((Path(tmp) / "params.yaml").read_text(), end="")
    return 0


def _sync(project: Path, to: str | None, include_running: bool) -> int:
    from geodesic import tracking
    from geodesic.params import TrackingSettings, load_params
    from geodesic.tracking.sync import sync

    params = project / "params.yaml"
    settings = load_params(params).tracking if params.exists() else TrackingSettings()
    folder = tracking.offline_store(settings, project)
    if not (folder / tracking.DEFAULT_DB).exists():
        print(f"nothing to sync: no offline store in {folder}")
        return 0
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # a line per run
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    source, target = tracking.sqlite_uri(folder), to or tracking.tracking_uri(project)
    if target == source:
        print(f"error: the target {target} is the offline store itself", file=sys.stderr)
        return 2
    try:
        tracking.check_reachable(target)
    except TrackingUnavailable as exc:
        raise TrackingUnavailable(f"{exc}; start it, or name another store with --to") from None
    report = sync(source, target, project, include_running, log=lambda s: print(s, flush=True))
    print(report.summary())
    return 0


def _ui(project: str, port: int | None, prefect: bool) -> int:
    """Replace this process by the server, so Ctrl-C and signals reach it directly."""
    if prefect:
        port = port or 4200
        cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
               "--port", str(port)]
        # the UI asks its own server which API to call: this one, not PREFECT_API_URL's
        # or the default port's
        os.environ.update(PREFECT_SERVER_API_HOST="127.0.0.1", PREFECT_SERVER_API_PORT=str(port),
                          PREFECT_UI_API_URL=f"http://127.0.0.1:{port}/api")
    else:
        from geodesic.tracking import ARTIFACT_DIR, open_store, tracking_uri
        uri = tracking_uri(Path(project))
        open_store(uri, Path(project) / ARTIFACT_DIR)  # a moved project: its locations follow
        cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
               "--host", "127.0.0.1", "--port", str(port or 5000), "--workers", "1"]
        os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")  # no GenAI jobs
        # the UI remembers its GenAI / model-training switch per browser; this URL sets it
        print(f"open http://127.0.0.1:{port or 5000}/#/experiments?workflowType=machine_learning"
              " (runs tables and charts)", flush=True)
    print(" ".join(cmd), flush=True)
    os.chdir(project)
    os.execv(sys.executable, cmd)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
