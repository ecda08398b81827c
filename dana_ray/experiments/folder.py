"""An experiment folder, as a sweep writes it and the report reads it: ``<storage>/<name>/`` holds the grid it
ran (``GRID_FILE``), one folder per trial named after its cell (``trial_folder``: ``<rule>_N16_round-robin_s2_<id>``),
and in each Tune's ``params.json`` (the trial's Tune config) and ``result.json`` (one JSON line per report).
"""

from __future__ import annotations

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


def read_results(path: str) -> list[dict]:
    """A trial's reported rows (``result.json``), the last report of each epoch in epoch order."""
    if not os.path.isfile(path):
        return []
    rows = []
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut short when the driver or trial was killed
                continue
            if isinstance(row, dict):
                rows.append(row)
    # A trial restored from a checkpoint reports some epochs again: keep the last report of each epoch.
    by_epoch = {r["epoch"]: r for r in rows if "epoch" in r}
    return [by_epoch[e] for e in sorted(by_epoch)]
