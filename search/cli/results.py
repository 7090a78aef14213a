"""The commands that read studies: rank, export, train (retrain an export), report, dashboard, clean-artifacts."""

from __future__ import annotations

import argparse
import sys

from search.cli import arguments
from search.errors import UserError


def _rank(args: argparse.Namespace) -> None:
    from search.rank import leaderboard_text

    print(leaderboard_text(args.storage, args.study, top=args.top, fmt=args.format, pareto=args.pareto))


def _export(args: argparse.Namespace) -> None:
    from search.configfile import write_yaml
    from search.export import Budget, export_trial, write_stored_model

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
    from search.final import evaluate_stored, retrain
    from search.scores import report_lines

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


def _add_rank(commands: argparse._SubParsersAction) -> None:
    from search.rank import FORMATS

    rank = commands.add_parser("rank", help="leaderboard of the trials of every study (or those named)")
    rank.add_argument("--study", action="append", help="only this study (repeatable)")
    rank.add_argument("--top", type=arguments.positive, default=20, help="rows to show (default: %(default)s)")
    rank.add_argument("--format", default=FORMATS[0], choices=FORMATS, help="(default: %(default)s)")
    rank.add_argument(
        "--pareto",
        action="store_true",
        help="only the Pareto-optimal trials of studies of several objectives (column `pareto` marks them)",
    )
    arguments.add_storage(rank)
    rank.set_defaults(handler=_rank)


def _add_export(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser(
        "export", help="write a study's best trial (or --trial N, or the best within --max-params N) as a YAML config"
    )
    export.add_argument("--study", help="study name (may be left out when the storage holds one study)")
    export.add_argument("--trial", type=int, help="export this trial number instead of the best (must be complete)")
    export.add_argument(
        "--max-params",
        type=arguments.positive,
        metavar="N",
        help="a study of several objectives: the most accurate complete trial of at most N trainable parameters",
    )
    export.add_argument(
        "--max-latency",
        type=arguments.positive_float,
        metavar="MS",
        help="... of at most MS milliseconds per 1,000 images (its study measured latency)",
    )
    export.add_argument("--out", type=arguments.path, help="YAML file to write (default: print to stdout)")
    export.add_argument(
        "--model", type=arguments.path, metavar="FILE.keras", help="also write the trial's model as the search kept it"
    )
    arguments.add_storage(export)
    export.set_defaults(handler=_export)


def _add_train(commands: argparse._SubParsersAction) -> None:
    from search.spec import DEFAULT_DATASET

    train = commands.add_parser(
        "train", help="retrain a YAML config, save CONFIG-stem.keras, evaluate it once on the test set"
    )
    train.add_argument(
        "config", type=arguments.path, help="a YAML file written by `search export` (or every config key)"
    )
    train.add_argument(
        "--full-train",
        action="store_true",
        help="train on the training and validation images (the validation accuracy is then not a fair number)",
    )
    train.add_argument(
        "--out-dir", type=arguments.path, help="folder for the .keras model and scores (default: the config's)"
    )
    train.add_argument(
        "--subset",
        type=arguments.count,
        default=0,
        help="train on the first N training images, for quick looks; 0 = all (default)",
    )
    train.add_argument(
        "--epochs",
        type=arguments.positive,
        help="train this many epochs instead of the config's (a cosine schedule stretches to them); "
        "the output and scores say so (default: the config's)",
    )
    arguments.add_dataset(
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
    arguments.add_storage(dashboard)
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
    arguments.add_dataset(
        report, f"with --compare, the studies of this data (default: {DEFAULT_DATASET})", default=None
    )
    report.add_argument(
        "--out", type=arguments.path, help=f"folder to write into (default: {REPORTS_DIR}/STUDY, or {COMPARE_DIR})"
    )
    arguments.add_storage(report)
    report.set_defaults(handler=_report)


def add(commands: argparse._SubParsersAction) -> None:
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
    arguments.add_storage(clean)
    clean.set_defaults(handler=_clean_artifacts)
