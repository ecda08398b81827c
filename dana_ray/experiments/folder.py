"""An experiment folder, as a sweep writes it and the report reads it: ``<storage>/<name>/`` holds the grid it
ran (``GRID_FILE``), one folder per trial named after its cell (``trial_folder``: ``<rule>_N16_round-robin_s2_<id>``),
and in each Tune's ``params.json`` (the trial's Tune config) and ``result.json`` (one JSON line per report).
"""

from __future__ import annotations

import csv
import json
import os
import re
from typing import Any

#: The grid a sweep ran, written into its experiment folder (a grid file: it can be run again as it is).
GRID_FILE = "grid.yaml"


def parse_cell(label: str) -> tuple[str, int]:
    """(algorithm, N) of a cell's label, ``"<rule> N=16"``."""
    algorithm, workers = label.rsplit(" N=", 1)
    return algorithm, int(workers)


def cell_label(algorithm: str, num_workers: int) -> str:
    return f"{algorithm} N={num_workers}"


def trial_folder(config: dict[str, Any], trial_id: str) -> str:
    """A sweep trial's name and folder, ``<rule>_N16_round-robin_s2_<Tune's trial id>``, from its Tune config."""
    algorithm, workers = parse_cell(config["cell"])
    return f"{algorithm}_N{workers}_{config['schedule']}_s{config['seed']}_{trial_id}"


_TRIAL_FOLDER = re.compile(r"^(?P<algorithm>.+?)_N(?P<workers>\d+)_(?P<schedule>[^_]+)_s(?P<seed>\d+)_(?P<id>.+)$")


def parse_trial_folder(name: str) -> tuple[str, int, str, int] | None:
    """(algorithm, num_workers, schedule, seed) of a ``trial_folder`` name (Tune's ids hold an underscore),
    or None for a name of another form."""
    match = _TRIAL_FOLDER.match(name)
    if match is None:
        return None
    return match["algorithm"], int(match["workers"]), match["schedule"], int(match["seed"])


RESULT_FILE = "result.json"
PROGRESS_FILE = "progress.csv"


def read_results(path: str) -> list[dict]:
    """A trial's reported rows (``result.json``), in epoch order; [] without the file. Raises ValueError
    naming the line that is not a JSON object (a cut or overwritten file): a trial whose history cannot be
    read is reported as such, never silently shortened. A row without an epoch (an older sweep's separate
    checkpoint-note row) is skipped; of an epoch reported twice (an older sweep kept the rows of an
    abandoned try) the last report counts."""
    if not os.path.isfile(path):
        return []
    rows = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
            if not isinstance(row, dict):
                raise ValueError(f"line {number} is not a JSON object (the file was cut or overwritten)")
            rows.append(row)
    by_epoch = {r["epoch"]: r for r in rows if isinstance(r.get("epoch"), int)}
    return [by_epoch[e] for e in sorted(by_epoch)]


def reported_epochs(trial_dir: str) -> tuple[int, bool]:
    """The last epoch in a trial's ``result.json`` (0 if none) and whether every line of it can be read."""
    last, clean = 0, True
    path = os.path.join(trial_dir, RESULT_FILE)
    if not os.path.isfile(path):
        return 0, True
    with open(path) as f:
        text = f.read()
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            clean = False
            continue
        if isinstance(row, dict) and isinstance(row.get("epoch"), int):
            last = max(last, row["epoch"])
        else:
            clean = False
    return last, clean and (not text or text.endswith("\n"))


def cut_history(trial_dir: str, before_epoch: int) -> None:
    """Rewrite a trial's ``result.json`` and ``progress.csv`` in place to one try: the rows of epochs
    1 .. ``before_epoch`` - 1, one per epoch (the last reported), in order; rows of an abandoned try, rows
    without an epoch and lines that cannot be read are dropped. In place (same file, truncated), so that
    Tune's loggers, which hold them open for appending, go on appending to them."""
    results = os.path.join(trial_dir, RESULT_FILE)
    if os.path.isfile(results):
        kept: dict[int, str] = {}
        with open(results) as f:
            for line in f:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(row, dict) and isinstance(row.get("epoch"), int) and row["epoch"] < before_epoch:
                    kept[row["epoch"]] = line if line.endswith("\n") else line + "\n"
        _rewrite(results, "".join(kept[e] for e in sorted(kept)))
    progress = os.path.join(trial_dir, PROGRESS_FILE)
    if os.path.isfile(progress):
        with open(progress, newline="") as f:
            lines = f.read().splitlines(keepends=True)
        if lines:
            header = next(csv.reader(lines[:1]))
            column = header.index("epoch") if "epoch" in header else None
            rows: dict[int, str] = {}
            for line in lines[1:]:
                values = next(csv.reader([line]), [])
                try:
                    epoch = int(float(values[column])) if column is not None else None
                except (IndexError, ValueError):
                    continue
                if epoch is not None and epoch < before_epoch and len(values) == len(header):
                    rows[epoch] = line if line.endswith("\n") else line + "\n"
            _rewrite(progress, lines[0] + "".join(rows[e] for e in sorted(rows)))


def _rewrite(path: str, text: str) -> None:
    with open(path, "r+", newline="") as f:
        if f.read() == text:
            return
        f.seek(0)
        f.write(text)
        f.truncate()
