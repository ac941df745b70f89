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

import argparse
import json
import os
import sys
from pathlib import Path

from geodesic.core.settings import ParamsError
from geodesic.errors import TrackingUnavailable
from pipelines.project import CommandFailed, SweepFailed

EPILOG = """Prefect: flows talk to PREFECT_API_URL when set (a `prefect server start` or
`geodesic ui --prefect`), otherwise to a temporary local server started for the
run (its first start can take a minute). PREFECT_HOME defaults to ./.prefect here.
MLflow: MLFLOW_TRACKING_URI, default sqlite:///<project>/mlflow.db; when that server does
not answer, stages stop (exit 3) or, with tracking.when_unreachable: offline in params.yaml,
record offline for `geodesic sync`."""


def _parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="geodesic", description="Reproduce, sweep and schedule the weight-space geodesic "
        "pipeline (DVC stages run as Prefect flows, every run recorded in MLflow).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("-C", "--project", default=".", help="the DVC project (default: .)")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    repro = sub.add_parser("repro", help="reproduce the DVC pipeline as a Prefect flow",
                           description="Run the stages of dvc.yaml as Prefect tasks in DVC's "
                           "order (each `dvc repro --single-item <stage>`: up-to-date stages "
                           "are skipped), nest their MLflow runs under one pipeline run, and "
                           "print the DVC metrics. A failing stage stops the flow with the "
                           "stage's own error message; transient failures are retried.")
    repro.add_argument("stages", nargs="*", help="stages to reproduce with their upstream "
                       "stages (default: all)")
    repro.add_argument("-f", "--force", action="store_true", help="rerun even up-to-date stages")
    repro.add_argument("--system-metrics", action="store_true", help="log CPU/memory/disk (and "
                       "GPU) usage of every stage run to MLflow")

    sweep = sub.add_parser("sweep", help="run parameter overrides as DVC experiments, compare",
                           description="Each point runs as `dvc exp run --temp -S ...` "
                           "(listed by `dvc exp show`); its MLflow runs are tagged with the "
                           "sweep id and the point's overrides; a comparison table ends up as a "
                           "Prefect artifact and in the sweep's MLflow run.",
                           epilog="example: geodesic sweep -S 'sparsify.solver=[cg,qp,penalty]'"
                           " -S sparsify.eta=[0.02,0.05]   (3 x 2 = 6 points)")
    sweep.add_argument("-S", "--set", dest="overrides", action="append", default=[],
                       metavar="KEY=[V1,V2,...]", help="values to sweep (their grid); "
                       "KEY=V fixes a value for every point (default, with no --point either: "
                       "params.yaml sweep.overrides)")
    sweep.add_argument("--point", action="append", default=[], metavar="'K=V K2=V2'",
                       help="an explicit point (repeatable), in addition to the grid")
    sweep.add_argument("--metric", dest="metrics", action="append", metavar="KEY",
                       help="a metric column of the table: a full key "
                       "(sparsify.methods.geodesic.0.9.test_acc) or a short one that ends it "
                       "(geodesic.0.9.test_acc, min_acc: every key ending so); default: the "
                       "test-quality metrics that vary, never timing")
    sweep.add_argument("--plot", dest="plot_metric", metavar="KEY",
                       help="metric to plot, full or short (default: the first column)")
    sweep.add_argument("--id", dest="sweep_id", help="sweep id (default: time and random)")
    sweep.add_argument("-f", "--force", action="store_true", help="rerun every stage of every "
                       "point (default: stages whose inputs ran before come from DVC's run "
                       "cache)")
    sweep.add_argument("--system-metrics", action="store_true", help="as for repro")

    serve = sub.add_parser("serve", help="serve both flows, the sweep on a cron schedule",
                           description="Serve the deployments geodesic-reproduce (on demand: "
                           "`prefect deployment run reproduce/geodesic-reproduce`) and "
                           "geodesic-sweep (on --cron, else params.yaml's sweep.cron, else "
                           "daily at 03:00) from this process until interrupted.")
    serve.add_argument("--cron", help="cron schedule of the sweep ('none': no schedule)")
    serve.add_argument("-S", "--set", dest="overrides", action="append", metavar="KEY=[...]",
                       help="the scheduled sweep's overrides (default: params.yaml sweep."
                       "overrides, else three seeds of the continual stage)")
    serve.add_argument("--limit", type=int, help="at most this many concurrent flow runs")

    deploy = sub.add_parser("deploy", help="deployments in a work pool, pulled from git",
                            description="Register <name>-reproduce and <name>-sweep in a "
                            "process work pool; their runs clone --source at --ref. Start "
                            "workers on any machine with `prefect worker start --pool POOL` "
                            "(same PREFECT_API_URL).")
    deploy.add_argument("--pool", required=True, help="process work pool (`prefect work-pool "
                        "create POOL --type process`)")
    deploy.add_argument("--source", required=True, help="git URL of the project")
    deploy.add_argument("--ref", help="branch to pull (default: the remote's default)")
    deploy.add_argument("--name", default="geodesic", help="deployment name prefix")
    deploy.add_argument("--cron", help="cron schedule of the sweep ('none': no schedule)")
    deploy.add_argument("-S", "--set", dest="overrides", action="append", metavar="KEY=[...]",
                        help="the sweep's overrides")
    deploy.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="environment of the flow runs, e.g. MLFLOW_TRACKING_URI=http://"
                        "mlflow-host:5000")

    ui = sub.add_parser("ui", help="MLflow UI (or --prefect: Prefect server) on 127.0.0.1",
                        description="Start `mlflow ui` on the project's tracking store, bound "
                        "to 127.0.0.1 (reach it from elsewhere through an SSH tunnel), or with "
                        "--prefect a Prefect server with its UI.")
    ui.add_argument("--port", type=int, help="port (default: 5000 MLflow, 4200 Prefect)")
    ui.add_argument("--prefect", action="store_true", help="start `prefect server start`")

    sync = sub.add_parser("sync", help="upload the runs recorded offline to the tracking server",
                          description="Upload every run of the offline store (params.yaml "
                          "tracking.offline_store) not uploaded yet: experiments by name, runs "
                          "with their times, status, params, tags, metric histories, artifacts "
                          "and nesting. Uploaded runs are tagged, so repeating or resuming an "
                          "interrupted sync uploads nothing twice. The model registry is not "
                          "copied (reported).")
    sync.add_argument("--to", metavar="URI", help="tracking store (default: MLFLOW_TRACKING_URI, "
                      "else the project's sqlite:///<project>/mlflow.db)")
    sync.add_argument("--include-running", action="store_true", help="also upload runs still "
                      "RUNNING (their stage is in progress or was killed)")

    tune = sub.add_parser("tune", help="choose every method's hyperparameters on validation",
                          description="Tune every method of one application (the geodesic "
                          "and each baseline) on the validation split with Optuna: the same "
                          "number of trials per method, TPE sampling, median pruning, studies "
                          "under tuning/<preset>/ keyed by the data, base networks and fixed "
                          "settings (an interrupted tuning of the same problem resumes). "
                          "Writes the chosen values to conf/tuned/<data>_<model>.yaml and a "
                          "report to results/<preset>/tuning/; every trial is an MLflow run "
                          "(experiment tune). Needs the outputs of `dvc repro train`.")
    tune.add_argument("application", help="sparsify | continual | connect")
    tune.add_argument("--trials", type=int, default=20, help="trials per method (default 20)")
    tune.add_argument("--method", dest="methods", action="append", metavar="NAME",
                      help="tune only this method (repeatable; default: every method)")
    tune.add_argument("--seed", type=int, default=0, help="seed of the TPE sampler")

    results = sub.add_parser("results", help="an application's table over seeds on a preset",
                             description="Run the application once per seed as DVC experiment "
                             "results-<preset>-<application>-s<i> (sparsify.seed = i; "
                             "continual.seed = i; connect.seeds = [2i, 2i+1]: independent "
                             "pairs) and write mean +- std per method with evaluations and "
                             "wall-clock to results/<preset>/<application>.{json,md,png}.")
    results.add_argument("application", help="sparsify | continual | connect")
    results.add_argument("--seeds", type=int, default=3, help="number of seeds (default 3)")
    results.add_argument("--preset", action="append", default=[], metavar="GROUP=NAME",
                         help="config group choice, e.g. data=mnist_real (repeatable)")

    compose = sub.add_parser("compose", help="write params.yaml from the conf/ presets",
                             description="Compose conf/config.yaml with the overrides exactly as "
                             "`dvc exp run -S ...` does (DVC's Hydra composition), check the "
                             "result, and write it (then `dvc repro` runs it in the workspace).",
                             epilog="example: geodesic compose -S data=mnist_real -S "
                             "model=vgg11_bn -S train.epochs=5")
    compose.add_argument("-S", "--set", dest="overrides", action="append", default=[],
                         metavar="GROUP=NAME|KEY=VALUE", help="a preset (data, model, scale) "
                         "or a value (Hydra override syntax)")
    compose.add_argument("-o", "--output", default="params.yaml", help="file written, relative "
                         "to the project (default: params.yaml; '-': print it)")
    return top


def _point(text: str) -> dict:
    from geodesic.core.settings import parse_spec
    return dict(parse_spec(item) for item in text.split())


def _print(result: dict) -> None:
    print(json.dumps(result, indent=2, default=str))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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
                          args.methods, args.trials)  # before Prefect starts
            result = tune(project=project, application=args.application, trials=args.trials,
                          methods=args.methods, seed=args.seed)
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
