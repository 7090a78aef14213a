"""`make bench`: runs the default benchmarks one after another and rewrites their sections of BENCHMARKS.md.

Each benchmark owns the text between `<!-- NAME:start -->` and `<!-- NAME:end -->` in
BENCHMARKS.md (a missing section is appended); everything outside the markers, such as the
hand-written Workers and Augmentation sections, is left as it is (their scripts,
`bench/workers.py` and `bench/augment.py`, run on their own). A section holds the command that
reproduces it, the date, the machine and its load, and what the script printed.

The default set takes about 30 minutes on a 2-core CPU (16 of them the search-efficiency runs:
4 minutes x 4 backends, written to their own section; issue 15's comparison is
`bench/search_efficiency.py --full`: 10 minutes x 4 backends x 3 seeds, 2 hours).
Run: .venv/bin/python bench/run_all.py [--only NAME ...] [--quick] [--file PATH]
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "BENCHMARKS.md"


@dataclass(frozen=True)
class Bench:
    """One script: its section's marker name and title, its flags for `make bench` and for --quick."""

    name: str
    title: str
    flags: tuple[str, ...]
    quick: tuple[str, ...]
    writes_itself: bool = False  # the script writes its own section (it is Markdown already)


BENCHES = (
    Bench("epoch_speed", "Epoch speed", ("--rounds", "3", "--epochs", "3"), ("--rounds", "1", "--epochs", "2")),
    Bench(
        "search_efficiency",
        "Search efficiency",
        ("--budget", "4"),
        ("--budget", "0.3", "--subset", "1000", "--epochs", "3", "--backends", "tpe", "random"),
        writes_itself=True,
    ),
    Bench("overhead", "Driver overhead", (), ("--trials", "2", "--epochs", "1")),
    Bench("memory", "Memory", ("--trials", "20"), ("--trials", "3", "--subset", "1000")),
)


def machine() -> str:
    """This machine in a few words: CPU count and model."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    vector = ", AVX-512" if " avx512f" in cpuinfo else ", AVX2, no AVX-512" if " avx2" in cpuinfo else ""
    return f"{os.cpu_count()} CPUs ({models[0] if models else 'unknown model'}{vector})"


def section(command: str, body: str, load_before: float, minutes: float) -> str:
    """A section's text: when, where and how it was measured, then the figures."""
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    return (
        f"Measured {now} on {machine()}; load average {load_before:.1f} when it started and "
        f"{os.getloadavg()[0]:.1f} at the end, its own processes included (an idle machine starts near 0); "
        f"took {minutes:.1f} min. Reproduce:\n\n"
        f"```\n{command}\n```\n\n{body.strip()}\n"
    )


def write_section(path: Path, name: str, title: str, text: str) -> None:
    """Replace the text between the section's markers in `path`; append the section when it has none."""
    start, end = f"<!-- {name}:start -->\n", f"<!-- {name}:end -->"
    content = path.read_text() if path.exists() else ""
    if start in content and end in content:
        before, rest = content.split(start, 1)
        content = before + start + text + rest[rest.index(end) :]
    else:
        content = (content.rstrip("\n") + "\n\n" if content.strip() else "") + f"## {title}\n\n{start}{text}{end}\n"
    path.write_text(content)


def add_budget_flags(parser: argparse.ArgumentParser, folder: str) -> None:
    """The flags of a script that runs searches for a wall-clock budget into a folder and writes its section."""
    parser.add_argument("--smoke", action="store_true", help="a few seconds per search on 500 images; writes nothing")
    parser.add_argument("--out", type=Path, help=f"empty or new folder for {folder} (default: a temp dir)")
    parser.add_argument("--benchmarks", type=Path, default=BENCHMARKS, help="file whose section is rewritten")
    parser.add_argument("--no-write", action="store_true", help="print the tables only; leave the file alone")


def settle_budget_flags(parser: argparse.ArgumentParser, args: argparse.Namespace, smoke: dict, default: dict) -> None:
    """Fill the flags left out from `smoke` or `default`; refuse an empty budget and a used --out folder."""
    for name, value in (smoke if args.smoke else default).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.budget <= 0 or args.epochs < 1:
        parser.error("--budget and --epochs must be above 0")
    if args.out and args.out.exists() and any(args.out.iterdir()):
        parser.error(f"--out {args.out} is not empty; pick a new folder (studies there would be resumed)")


def out_folder(args: argparse.Namespace, prefix: str) -> Path:
    """The --out folder, or a new temporary one, made and named on stderr."""
    folder = args.out or Path(tempfile.mkdtemp(prefix=prefix))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"storage and logs: {folder}", file=sys.stderr)
    return folder


def as_markdown(output: str) -> str:
    """A script's plain output as Markdown: table lines stay tables, the other lines go in code blocks."""
    blocks: list[tuple[bool, list[str]]] = []
    for line in output.strip().splitlines():
        is_table = line.startswith("|")
        if not blocks or blocks[-1][0] != is_table:
            blocks.append((is_table, []))
        blocks[-1][1].append(line)
    return "\n\n".join("\n".join(lines) if table else "```\n" + "\n".join(lines) + "\n```" for table, lines in blocks)


def command_of(bench: Bench, args: argparse.Namespace) -> list[str]:
    """The script's command line, as run; a script that writes itself is pointed at the same file, or told not to."""
    flags = list(bench.quick if args.quick else bench.flags)
    if bench.writes_itself:
        if args.file is None:
            flags.append("--no-write")
        elif args.file != BENCHMARKS:
            flags += ["--benchmarks", str(args.file)]
    return [".venv/bin/python", f"bench/{bench.name}.py", *flags]


def run(bench: Bench, args: argparse.Namespace) -> tuple[str, float]:
    """Run one script, echoing its output as it comes; what it printed and the minutes it took."""
    started = time.monotonic()
    argv = command_of(bench, args)
    process = subprocess.Popen([sys.executable, *argv[1:]], cwd=REPO, stdout=subprocess.PIPE, text=True)
    lines = []
    for line in process.stdout:
        print(line, end="", flush=True)
        lines.append(line)
    if process.wait():
        raise SystemExit(f"{' '.join(argv)} failed with status {process.returncode}; sections written so far stay")
    return "".join(lines), (time.monotonic() - started) / 60


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    names = [bench.name for bench in BENCHES]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=names, help="run only these benchmarks (default: all)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny settings (a few minutes) to check that every script runs; the figures mean nothing, so "
        "BENCHMARKS.md is left alone unless --file names a file",
    )
    parser.add_argument("--file", type=Path, help=f"file to rewrite (default: {BENCHMARKS.name}; none with --quick)")
    args = parser.parse_args(argv)
    if args.file is None and not args.quick:
        args.file = BENCHMARKS
    args.file = args.file and args.file.resolve()  # the scripts run in the repository, maybe not here
    args.only = args.only or names
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    total = time.monotonic()
    for bench in (b for b in BENCHES if b.name in args.only):
        print(f"\n== {bench.title}: {' '.join(command_of(bench, args))}", flush=True)
        load_before = os.getloadavg()[0]
        output, minutes = run(bench, args)
        if args.file is not None and not bench.writes_itself:
            text = section(" ".join(command_of(bench, args)), as_markdown(output), load_before, minutes)
            write_section(args.file, bench.name, bench.title, text)
        print(f"== {bench.title}: {minutes:.1f} min", flush=True)
    where = f"; sections rewritten in {args.file}" if args.file else ""
    print(f"\nall done in {(time.monotonic() - total) / 60:.1f} min{where}")


if __name__ == "__main__":
    main()
