"""Commands that need no study: fetch and check data, list the spaces, print the config schema."""

from __future__ import annotations

import argparse

from search.cli import arguments


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


def add(commands: argparse._SubParsersAction) -> None:
    from search.spec import DEFAULT_DATASET

    data = commands.add_parser("data", help="fetch and verify a dataset into the data cache, or check an .npz file")
    arguments.add_dataset(data, "the data to fetch or check (default: %(default)s)", default=DEFAULT_DATASET)
    data.add_argument(
        "--data-dir",
        type=arguments.path,
        help="cache folder (default: $SEARCH_DATA_DIR, else the user cache: docs/data.md)",
    )
    data.set_defaults(handler=_data)
    commands.add_parser("spaces", help="list the search spaces and their parameters").set_defaults(handler=_spaces)
    commands.add_parser("schema", help="print the config schema as a Markdown table").set_defaults(handler=_schema)
