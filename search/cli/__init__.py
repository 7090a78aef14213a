"""The command line: argument parsing and turning errors into one clear line; no search logic here.

Each command's options and handler live together: `info` (data, spaces, schema), `run` (run,
worker), `results` (rank, export, train, report, dashboard, clean-artifacts); `arguments` holds
the argument types they share.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from search.cli import arguments, info, results, run
from search.errors import UserError


def _parser() -> argparse.ArgumentParser:
    parser = arguments.OneLineParser(
        prog="search", description="Hyperparameter search for Keras MLPs on MNIST and more."
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=arguments.OneLineParser
    )
    for module in (info, run, results):
        module.add(commands)
    return parser


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
