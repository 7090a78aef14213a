"""The commands that search: `run` starts or resumes a study, `worker` joins one.

"Resume with:" is read off `run`'s own options, so a new option reaches it by itself.
"""

from __future__ import annotations

import argparse

from search.cli import arguments


def _run(args: argparse.Namespace) -> int:
    from search.study import StudySpec, run_study

    spec = StudySpec(
        space=args.space,
        backend=args.backend,
        objective=args.objective,
        pruner=args.pruner,
        epochs=args.epochs,
        subset=args.subset,
        dataset=args.dataset,
        seed=args.seed,
        baseline=args.baseline,
        prior=args.prior,
        command=_reproduce(args),
    )
    return run_study(
        spec,
        study=_study_name(args),
        storage=args.storage,
        n_trials=args.trials,
        timeout=args.timeout * 60 or None,
        workers=args.workers,
        heartbeat=args.heartbeat,
        keep_models=args.keep_models,
        artifacts=args.artifacts,
    )


def _worker(args: argparse.Namespace) -> int:
    from search.study import join_study

    return join_study(study=args.study, storage=args.storage, n_trials=args.trials, timeout=args.timeout * 60 or None)


def _reproduce(args: argparse.Namespace) -> str:
    """The command that reproduces (or resumes) this study, read off the `run` parser's own options.

    Every option that takes a value is written with its value, every switch that is on is written;
    so a new option shows up here by itself. The study's name is spelled out and a storage
    password is masked.
    """
    from search.storage import redact

    values = {**vars(args), "study": _study_name(args), "storage": redact(args.storage)}
    words = ["python", "-m", "search", "run"]
    for action in args.options._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        value = values[action.dest]
        if value is None:  # left out, for the study's own (a resumed study) or the default
            continue
        if action.nargs == 0:  # a switch
            words += [action.option_strings[0]] if value != action.default else []
        else:
            words += [action.option_strings[0], f"{value:g}" if isinstance(value, float) else str(value)]
    return " ".join(words)


def _study_name(args: argparse.Namespace) -> str:
    from search.spec import default_study_name

    return args.study or default_study_name(args.space, args.backend)


def add(commands: argparse._SubParsersAction) -> None:
    from search.artifacts import KEEP_MODELS, ROOT_SUFFIX
    from search.backends import BACKENDS, MULTI_OBJECTIVE_BACKENDS, PRUNERS
    from search.config import OBJECTIVES
    from search.spec import (
        COSTS,
        DEFAULT_BACKEND,
        DEFAULT_DATASET,
        DEFAULT_MULTI_PRUNER,
        DEFAULT_OBJECTIVE,
        DEFAULT_PRUNER,
        DEFAULT_SPACE,
        STUDY_EPOCHS,
    )
    from search.storage import GRACE_HEARTBEATS, HEARTBEAT_SECONDS
    from spaces import SPACES

    run = commands.add_parser("run", help="run (or resume) a study: sample a space, train, record every trial")
    run.add_argument("--space", default=DEFAULT_SPACE, help=f"search space: {', '.join(SPACES)} (default: %(default)s)")
    run.add_argument(
        "--backend", default=DEFAULT_BACKEND, help=f"search algorithm: {', '.join(BACKENDS)} (default: %(default)s)"
    )
    run.add_argument(
        "--pruner",
        help=f"stops poor trials early (Optuna backends): {', '.join(PRUNERS)} (default: a resumed study's own, "
        f"else {DEFAULT_PRUNER}; with several objectives {DEFAULT_MULTI_PRUNER}: a trial goes on while it keeps "
        "up with the trials no larger)",
    )
    run.add_argument(
        "--objective",
        type=arguments.objective,
        default=DEFAULT_OBJECTIVE,
        help=f"{' or '.join(OBJECTIVES)}: val_accuracy is maximized, val_loss minimized; or a Pareto front of it "
        f"against costs, minimized: a comma list adding {' and/or '.join(f'{k} ({v})' for k, v in COSTS.items())}, "
        f"e.g. val_accuracy,params (backends {', '.join(MULTI_OBJECTIVE_BACKENDS)}; pruner "
        f"{DEFAULT_MULTI_PRUNER} or none) (default: %(default)s)",
    )
    run.add_argument(
        "--trials",
        type=arguments.positive,
        # High, so that the time budget decides: under asha a trial is one rung's training (from 1 epoch).
        default=1000,
        help="finished trials the study should hold, resumed ones included (default: %(default)s)",
    )
    run.add_argument(
        "--timeout",
        type=arguments.minutes,
        default="60",
        help="minutes after which no new trial starts; 0 = none (default: %(default)s)",
    )
    run.add_argument(
        "--epochs",
        type=arguments.positive,
        default=STUDY_EPOCHS,
        help="maximum epochs per trial; the pruner decides which trials get them (default: %(default)s)",
    )
    run.add_argument(
        "--subset",
        type=arguments.count,
        default=0,
        help="train on the first N training examples (MNIST has 50,000), for quick looks; 0 = all (default)",
    )
    arguments.add_dataset(run, "what the study trains on (default: %(default)s)", default=DEFAULT_DATASET)
    run.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_false",
        help="do not start a new study with the reference model as trial 0",
    )
    run.add_argument(
        "--no-prior",
        dest="prior",
        action="store_false",
        help="do not queue the space's best known config (space full) in a new study",
    )
    run.add_argument("--study", help="study name (default: SPACE-BACKEND)")
    run.add_argument("--seed", type=int, default=0, help="seed of the sampler and of trial i's weights (seed+i)")
    run.add_argument(
        "--workers", type=arguments.positive, default=1, help="worker processes on this machine (default: 1)"
    )
    run.add_argument(
        "--keep-models",
        type=arguments.count,
        metavar="K",
        help=f"keep the trained models of the study's best K complete trials, as Optuna artifacts; 0 = none "
        f"(default: a resumed study's own, else {KEEP_MODELS})",
    )
    run.add_argument(
        "--artifacts",
        metavar="WHERE",
        help=f"where the kept models go: a folder, or s3://bucket/prefix (default: a resumed study's own, else "
        f"beside the SQLite file: studies{ROOT_SUFFIX}/; with PostgreSQL none, so models are not kept)",
    )
    run.add_argument(
        "--heartbeat",
        type=arguments.positive,
        default=HEARTBEAT_SECONDS,
        help="seconds between a running trial's signs of life; a killed worker's trial is retried once it "
        f"missed {GRACE_HEARTBEATS}; every worker of the study uses this value (default: %(default)s)",
    )
    arguments.add_storage(run)
    run.set_defaults(handler=_run, options=run)

    worker = commands.add_parser("worker", help="join an existing study as one more worker (any machine)")
    worker.add_argument("--study", required=True, help="name of the study to join")
    worker.add_argument(
        "--trials",
        type=arguments.positive,
        help="finished trials the study should hold (default: the number it was started with)",
    )
    worker.add_argument(
        "--timeout", type=arguments.minutes, default=0.0, help="minutes after which no new trial starts"
    )
    arguments.add_storage(worker)
    worker.set_defaults(handler=_worker)
