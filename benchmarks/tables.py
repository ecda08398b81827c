"""What a benchmark prints and what it records: aligned tables on stdout as their rows are measured, and with
``--json PATH`` the same tables as JSON, with the command, commit, date and machine that made them. The docs'
performance page renders those files (``docs/_ext/benchmark_tables.py``), so no table there is typed by hand.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Table:
    """One table: a title, columns of (name, format), rows printed as they come."""

    def __init__(self, title: str, columns: list[tuple[str, str]]) -> None:
        """``columns``: (name, format spec) each; a spec ``<k`` is text left-aligned in k characters."""
        self.title, self.columns, self.rows = title, columns, []
        self.left = [spec.startswith("<") for _, spec in columns]
        self.widths = [
            max(len(name), 8, int(spec[1:]) if left else 0) for (name, spec), left in zip(columns, self.left)
        ]
        print(title)
        print(self._line([name for name, _ in columns]).rstrip(), flush=True)

    def _line(self, cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if left else c.rjust(w) for c, w, left in zip(cells, self.widths, self.left))

    def add(self, *values: Any) -> None:
        """A row: its values in the columns' order (a float that is nan prints as nan)."""
        if len(values) != len(self.columns):
            raise ValueError(f"{self.title}: {len(values)} values for {len(self.columns)} columns")
        self.rows.append([_plain(v) for v in values])
        print(self._line([cell_text(v, spec) for v, (_, spec) in zip(values, self.columns)]).rstrip(), flush=True)

    def as_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "columns": [name for name, _ in self.columns],
            "formats": [spec for _, spec in self.columns],
            "rows": self.rows,
        }


def cell_text(value: Any, spec: str) -> str:
    """A cell as printed and as the docs show it: ``format(value, spec)``, text as it is for a ``<k`` or empty
    spec, and a recorded nan (JSON null) as nan."""
    if value is None:
        return "nan"
    return str(value) if not spec or spec.startswith("<") else format(value, spec)


class Record:
    """A benchmark run's tables and notes; ``save`` writes them with where and when they were measured."""

    def __init__(self, name: str) -> None:
        self.name, self.tables, self.notes = name, [], []

    def table(self, title: str, columns: list[tuple[str, str]]) -> Table:
        self.tables.append(Table(title, columns))
        return self.tables[-1]

    def note(self, text: str) -> None:
        """A line printed now and kept with the tables (the machine, the model, a run's total time)."""
        print(text, flush=True)
        self.notes.append(text)

    def save(self, path: str | None, argv: list[str] | None = None) -> None:
        if not path:
            return
        args = sys.argv[1:] if argv is None else argv
        record = {
            "benchmark": self.name,
            "command": " ".join(["python", f"benchmarks/{self.name}.py", *args]),
            "commit": _commit(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
            "machine": machine(),
            "notes": self.notes,
            "tables": [t.as_dict() for t in self.tables],
        }
        with open(path, "w") as f:
            json.dump(record, f, indent=1)
            f.write("\n")
        print(f"recorded in {path}", file=sys.stderr)


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="PATH", help="also write the tables, command, commit, date and machine")


def machine() -> str:
    """The machine in words: CPU cores, memory, GPU, and the torch version."""
    import torch

    memory = ""
    if hasattr(os, "sysconf") and "SC_PHYS_PAGES" in os.sysconf_names:
        memory = f", {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB"
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    return f"{os.cpu_count()} CPU cores ({platform.machine()}){memory}{gpu}; torch {torch.__version__}"


def _commit() -> str:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True)
        return done.stdout.strip() + ("+changes" if dirty.stdout.strip() else "") or "unknown"
    except OSError:
        return "unknown"


def _plain(value: Any) -> Any:
    """A JSON value: numbers and strings as they are (nan as None), anything else as its text."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return None if value != value else value
    return str(value)
