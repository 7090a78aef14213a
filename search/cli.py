"""The command line: argument parsing and turning errors into one clear line; no search logic here."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from search.errors import UserError


def _data(args: argparse.Namespace) -> None:
    from search.data import load_dataset

    data = load_dataset(args.dataset, args.data_dir)
    shape = "x".join(str(n) for n in data.inputs.shape)
    print(
        f"{data.source}: verified; train {len(data.y_train)}, validation {len(data.y_val)}, "
        f"test {len(data.y_test)} {data.examples} of {shape}, {data.n_classes} classes "
        f"({data.name}, dataset {data.checksum})"
    )


def _spaces(args: argparse.Namespace) -> None:
    import inspect

    from search.config import TrialConfig
    from spaces import SPACES
    from spaces._catalog import catalog

    for name, suggest in SPACES.items():
        doc = inspect.getmodule(suggest).__doc__ or ""
        params = catalog(suggest, TrialConfig())
        width = max(len(param.name) for param in params)
        print(f"{name}\n  " + "\n  ".join(doc.strip().splitlines()) + "\n\n  Parameters:")
        print("\n".join(f"    {param.name:<{width}}  {param.describe()}" for param in params) + "\n")


def _schema(args: argparse.Namespace) -> None:
    from search.config import schema_rows

    print("| key | type | allowed | default | meaning |\n|---|---|---|---|---|")
    for row in schema_rows():
        print("| " + " | ".join(f"`{row['key']}`" if k == "key" else row[k] for k in row) + " |")


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


def _rank(args: argparse.Namespace) -> None:
    from search.rank import leaderboard_text

    print(leaderboard_text(args.storage, args.study, top=args.top, fmt=args.format, pareto=args.pareto))


def _export(args: argparse.Namespace) -> None:
    from search.export import Budget, export_trial, write_stored_model, write_yaml

    budget = None
    if args.max_params is not None or args.max_latency is not None:
        budget = Budget(max_params=args.max_params, max_latency_ms=args.max_latency)
    exported = export_trial(args.storage, args.study, args.trial, budget=budget)
    for warning in exported.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.model is not None:
        write_stored_model(args.storage, exported, args.model)
    wrote_model = f"wrote {args.model}: trial {exported.provenance['trial']}'s model as the search kept it"
    if args.out is None:
        if args.model is not None:
            print(wrote_model, file=sys.stderr)  # stdout is the YAML
        print(exported.to_yaml(), end="")
        return
    write_yaml(exported, args.out)
    origin = exported.provenance
    print(
        f"wrote {args.out}: trial {origin['trial']} of study '{origin['study']}', "
        f"{origin['objective']} {origin['value']:.4f}; retrain it with: make train CONFIG={args.out}"
    )
    if args.model is not None:
        print(f"{wrote_model}; test it as it is with: make train CONFIG={args.out} FROM_STORED=1")


def _train(args: argparse.Namespace) -> None:
    from search.final import evaluate_stored, report_lines, retrain

    if args.from_stored:
        changed = [
            flag
            for flag, value in (("--full-train", args.full_train), ("--subset", args.subset), ("--epochs", args.epochs))
            if value
        ]
        if changed:
            raise UserError(
                f"--from-stored evaluates the model the search kept, as it is; leave out {', '.join(changed)}"
            )
        scores = evaluate_stored(args.config, out_dir=args.out_dir, dataset=args.dataset)
    else:
        scores = retrain(
            args.config,
            full_train=args.full_train,
            out_dir=args.out_dir,
            subset_size=args.subset,
            epochs=args.epochs or 0,
            dataset=args.dataset,
        )
    print("\n".join(report_lines(scores)))


def _clean_artifacts(args: argparse.Namespace) -> None:
    from search.artifacts import clean_artifacts
    from search.storage import open_storage

    print("\n".join(clean_artifacts(args.storage, open_storage(args.storage, must_exist=True), args.artifacts)))


def _dashboard(args: argparse.Namespace) -> None:
    from search.dashboard import serve

    serve(args.storage, host=args.host, port=args.port)


def _report(args: argparse.Namespace) -> None:
    from search.spec import DEFAULT_DATASET

    if args.dataset and not args.compare:
        raise UserError("--dataset picks the studies --compare compares; a --study report needs none")
    if args.compare:
        from search.report.compare import write_comparison

        table, page = write_comparison(args.storage, args.dataset or DEFAULT_DATASET, args.out)
        print(table)
        print(f"wrote {page} and {page.with_suffix('.png')}", file=sys.stderr)
        return
    if not args.study:
        raise UserError("name the study to report with --study NAME (`search rank` lists them), or pass --compare")
    from search.report.study import write_study_report

    page, *images = write_study_report(args.storage, args.study, args.out)
    print(f"wrote {page} and {len(images)} images: {', '.join(image.name for image in images)}")


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


def _add_storage(parser: argparse.ArgumentParser) -> None:
    from search.storage import DEFAULT_STORAGE

    parser.add_argument("--storage", default=DEFAULT_STORAGE, help="Optuna storage URL (default: %(default)s)")


def _add_run(commands: argparse._SubParsersAction) -> None:
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
        type=_objective,
        default=DEFAULT_OBJECTIVE,
        help=f"{' or '.join(OBJECTIVES)}: val_accuracy is maximized, val_loss minimized; or a Pareto front of it "
        f"against costs, minimized: a comma list adding {' and/or '.join(f'{k} ({v})' for k, v in COSTS.items())}, "
        f"e.g. val_accuracy,params (backends {', '.join(MULTI_OBJECTIVE_BACKENDS)}; pruner "
        f"{DEFAULT_MULTI_PRUNER} or none) (default: %(default)s)",
    )
    run.add_argument(
        "--trials",
        type=_positive,
        # High, so that the time budget decides: under asha a trial is one rung's training (from 1 epoch).
        default=1000,
        help="finished trials the study should hold, resumed ones included (default: %(default)s)",
    )
    run.add_argument(
        "--timeout",
        type=_minutes,
        default="60",
        help="minutes after which no new trial starts; 0 = none (default: %(default)s)",
    )
    run.add_argument(
        "--epochs",
        type=_positive,
        default=STUDY_EPOCHS,
        help="maximum epochs per trial; the pruner decides which trials get them (default: %(default)s)",
    )
    run.add_argument(
        "--subset",
        type=_count,
        default=0,
        help="train on the first N training examples (MNIST has 50,000), for quick looks; 0 = all (default)",
    )
    _add_dataset(run, "what the study trains on (default: %(default)s)", default=DEFAULT_DATASET)
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
    run.add_argument("--workers", type=_positive, default=1, help="worker processes on this machine (default: 1)")
    run.add_argument(
        "--keep-models",
        type=_count,
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
        type=_positive,
        default=HEARTBEAT_SECONDS,
        help="seconds between a running trial's signs of life; a killed worker's trial is retried once it "
        f"missed {GRACE_HEARTBEATS}; every worker of the study uses this value (default: %(default)s)",
    )
    _add_storage(run)
    run.set_defaults(handler=_run, options=run)

    worker = commands.add_parser("worker", help="join an existing study as one more worker (any machine)")
    worker.add_argument("--study", required=True, help="name of the study to join")
    worker.add_argument(
        "--trials",
        type=_positive,
        help="finished trials the study should hold (default: the number it was started with)",
    )
    worker.add_argument("--timeout", type=_minutes, default=0.0, help="minutes after which no new trial starts")
    _add_storage(worker)
    worker.set_defaults(handler=_worker)


def _add_rank(commands: argparse._SubParsersAction) -> None:
    from search.rank import FORMATS

    rank = commands.add_parser("rank", help="leaderboard of the trials of every study (or those named)")
    rank.add_argument("--study", action="append", help="only this study (repeatable)")
    rank.add_argument("--top", type=_positive, default=20, help="rows to show (default: %(default)s)")
    rank.add_argument("--format", default=FORMATS[0], choices=FORMATS, help="(default: %(default)s)")
    rank.add_argument(
        "--pareto",
        action="store_true",
        help="only the Pareto-optimal trials of studies of several objectives (column `pareto` marks them)",
    )
    _add_storage(rank)
    rank.set_defaults(handler=_rank)


def _add_export(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser(
        "export", help="write a study's best trial (or --trial N, or the best within --max-params N) as a YAML config"
    )
    export.add_argument("--study", help="study name (may be left out when the storage holds one study)")
    export.add_argument("--trial", type=int, help="export this trial number instead of the best (must be complete)")
    export.add_argument(
        "--max-params",
        type=_positive,
        metavar="N",
        help="a study of several objectives: the most accurate complete trial of at most N trainable parameters",
    )
    export.add_argument(
        "--max-latency",
        type=_positive_float,
        metavar="MS",
        help="... of at most MS milliseconds per 1,000 images (its study measured latency)",
    )
    export.add_argument("--out", type=_path, help="YAML file to write (default: print to stdout)")
    export.add_argument(
        "--model", type=_path, metavar="FILE.keras", help="also write the trial's model as the search kept it"
    )
    _add_storage(export)
    export.set_defaults(handler=_export)


def _add_train(commands: argparse._SubParsersAction) -> None:
    from search.spec import DEFAULT_DATASET

    train = commands.add_parser(
        "train", help="retrain a YAML config, save CONFIG-stem.keras, evaluate it once on the test set"
    )
    train.add_argument("config", type=_path, help="a YAML file written by `search export` (or every config key)")
    train.add_argument(
        "--full-train",
        action="store_true",
        help="train on the training and validation images (the validation accuracy is then not a fair number)",
    )
    train.add_argument("--out-dir", type=_path, help="folder for the .keras model and scores (default: the config's)")
    train.add_argument(
        "--subset",
        type=_count,
        default=0,
        help="train on the first N training images, for quick looks; 0 = all (default)",
    )
    train.add_argument(
        "--epochs",
        type=_positive,
        help="train this many epochs instead of the config's (a cosine schedule stretches to them); "
        "the output and scores say so (default: the config's)",
    )
    _add_dataset(
        train,
        "train and test on it; it must be what the config's trial trained on "
        f"(default: what its provenance names, else {DEFAULT_DATASET})",
        default=None,
    )
    train.add_argument(
        "--from-stored",
        action="store_true",
        help="do not retrain: evaluate the model the search kept for the config's trial once on the test set",
    )
    train.set_defaults(handler=_train)


def _add_dashboard(commands: argparse._SubParsersAction) -> None:
    from search.dashboard import DEFAULT_HOST, DEFAULT_PORT

    dashboard = commands.add_parser(
        "dashboard", help="optuna-dashboard over the storage; safe to run while searches write to it"
    )
    dashboard.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default: %(default)s)")
    dashboard.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on (default: %(default)s)")
    _add_storage(dashboard)
    dashboard.set_defaults(handler=_dashboard)


def _add_report(commands: argparse._SubParsersAction) -> None:
    from search.report import COMPARE_DIR, REPORTS_DIR
    from search.spec import DEFAULT_DATASET

    report = commands.add_parser("report", help="HTML page and PNG plots of a study, or --compare the spaces")
    what = report.add_mutually_exclusive_group()
    what.add_argument("--study", help="the study to report on")
    what.add_argument(
        "--compare", action="store_true", help="compare the best study of each space against its baseline trial"
    )
    _add_dataset(report, f"with --compare, the studies of this data (default: {DEFAULT_DATASET})", default=None)
    report.add_argument(
        "--out", type=_path, help=f"folder to write into (default: {REPORTS_DIR}/STUDY, or {COMPARE_DIR})"
    )
    _add_storage(report)
    report.set_defaults(handler=_report)


def _add_dataset(parser: argparse.ArgumentParser, what: str, *, default: str | None) -> None:
    """`--dataset`, checked and spelled one way (search.data.dataset_name) as it is parsed; `what` says its use."""
    from search.data import KINDS

    parser.add_argument("--dataset", type=_dataset, default=default, help=f"{KINDS}: {what}")


def _parser() -> argparse.ArgumentParser:
    from search.spec import DEFAULT_DATASET

    parser = _OneLineParser(prog="search", description="Hyperparameter search for Keras MLPs on MNIST and more.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_OneLineParser)

    data = commands.add_parser("data", help="fetch and verify a dataset into the data cache, or check an .npz file")
    _add_dataset(data, "the data to fetch or check (default: %(default)s)", default=DEFAULT_DATASET)
    data.add_argument(
        "--data-dir", type=_path, help="cache folder (default: $SEARCH_DATA_DIR, else the user cache: docs/data.md)"
    )
    data.set_defaults(handler=_data)

    commands.add_parser("spaces", help="list the search spaces and their parameters").set_defaults(handler=_spaces)
    commands.add_parser("schema", help="print the config schema as a Markdown table").set_defaults(handler=_schema)
    _add_run(commands)
    _add_rank(commands)
    _add_export(commands)
    _add_train(commands)
    _add_dashboard(commands)
    _add_report(commands)
    clean = commands.add_parser(
        "clean-artifacts", help="remove kept models no study uses (a study deleted with `optuna delete-study`)"
    )
    clean.add_argument(
        "--artifacts", metavar="WHERE", help="a store's root to clean too (default: beside the SQLite file)"
    )
    _add_storage(clean)
    clean.set_defaults(handler=_clean_artifacts)
    return parser


class _OneLineParser(argparse.ArgumentParser):
    """Bad flags end in one line naming the problem (and where to look), not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def _path(text: str) -> Path:
    return Path(text)


def _dataset(text: str) -> str:
    from search.data import dataset_name

    try:
        return dataset_name(text)
    except UserError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _objective(text: str) -> str:
    """`--objective`, checked and spelled one way (no spaces), so a study's identity compares alike."""
    from search.spec import objectives_of

    try:
        return ",".join(objectives_of(text))
    except UserError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value < math.inf:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _minutes(text: str) -> float:
    value = float(text)
    if not 0 <= value < math.inf:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"must be 0 or more minutes, got {text}")
    return value


_TRAINING_COMMANDS = ("run", "worker", "train")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a UserError becomes `error: <message>` on stderr and exit status 2."""
    args = _parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int | None] = args.handler
    from search.process import import_tensorflow_quietly, quiet_optuna

    quiet_optuna()
    if args.command in _TRAINING_COMMANDS:
        import_tensorflow_quietly()  # before any module imports it, and only for commands that train
    try:
        return handler(args) or 0
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
