"""The arguments of every ``geodesic`` command (:mod:`pipelines.__main__` runs them)."""
from __future__ import annotations

import argparse

EPILOG = """Prefect: flows talk to PREFECT_API_URL when set (a `prefect server start` or
`geodesic ui --prefect`), otherwise to a temporary local server started for the
run (its first start can take a minute). PREFECT_HOME defaults to ./.prefect here.
MLflow: MLFLOW_TRACKING_URI, default sqlite:///<project>/mlflow.db; when that server does
not answer, stages stop (exit 3) or, with tracking.when_unreachable: offline in params.yaml,
record offline for `geodesic sync`."""


def parser() -> argparse.ArgumentParser:
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
    tune.add_argument("application", help="sparsify | continual | connect | hybrid")
    tune.add_argument("--trials", type=int, default=20, help="trials per method (default 20)")
    tune.add_argument("--method", dest="methods", action="append", metavar="NAME",
                      help="tune only this method (repeatable; default: every method)")
    tune.add_argument("--seed", type=int, default=0, help="seed of the TPE sampler")
    tune.add_argument("--sequences", type=int, default=1,
                      help="continual: score each trial on the mean validation ACC over this "
                      "many task sequences (seeds continual.seed, +1, ...); sparsify: over this "
                      "many base networks (seeds sparsify.seed, +1, ...); connect: over this "
                      "many pairs (connect.seeds, each seed +2, ...; default 1)")

    results = sub.add_parser("results", help="an application's table over seeds on a preset",
                             description="Run the application once per seed as DVC experiment "
                             "results-<preset>-<application>-s<i> (sparsify.seed = i; "
                             "continual.seed = i; hybrid.seed = i; connect.seeds = [2i, "
                             "2i+1]: independent pairs) and write mean +- std per method "
                             "with evaluations and wall-clock to "
                             "results/<preset>/<application>.{json,md,png}.")
    results.add_argument("application", help="sparsify | continual | connect | hybrid")
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
