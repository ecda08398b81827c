"""Every benchmark runs end to end at a tiny size and prints its table (the real runs are on the docs'
performance page, rendered from what the benchmarks record with --json)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bench(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", script), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def _recorded(tmp_path, script: str, *args: str) -> tuple[str, list[dict]]:
    """What the benchmark printed, and the tables it recorded with --json."""
    path = tmp_path / f"{script}.json"
    out = bench(script, *args, "--json", str(path))
    return out, json.loads(path.read_text())["tables"]


def _rows(table: dict) -> list[dict]:
    """A recorded table's rows as {column: value}."""
    return [dict(zip(table["columns"], row)) for row in table["rows"]]


def _by_label(table: dict, label_column: int = 0) -> dict:
    """A table's rows as {label: {column: value}}."""
    return {row[table["columns"][label_column]]: row for row in _rows(table)}


def test_server_update_benchmark(tmp_path):
    args = [
        "--sizes",
        "0.01",
        "--workers",
        "1",
        "4",
        "--rules",
        "dana",
        "dana-slim",
    ]
    out, (costs, reference) = _recorded(tmp_path, "server_update.py", *args)
    rows = {line[:21].strip(): line[21:].split() for line in out.splitlines() if line.startswith("dana")}
    assert set(rows) == {"dana", "dana fused", "dana-slim", "dana-slim fused"}
    assert {row[0]: [f"{v:.2f}" for v in row[2:]] for row in costs["rows"]} == {k: v[1:] for k, v in rows.items()}
    assert reference["columns"][:3] == ["d (M)", "us per vector", "GB/s"] and reference["rows"][0][0] == 0.01
    for label, (d, one, four, growth) in ((k, map(float, row)) for k, row in rows.items()):
        assert d == 0.01 and growth == pytest.approx(four / one, abs=0.02)  # the columns are what they say
        if not label.endswith("fused"):  # a compiled pass at this d is call overhead: its ratio is noise
            assert growth < 2.5  # an update's cost does not grow with N (O(d), not O(N·d)); 4x if it did


def test_simulate_benchmark(tmp_path):
    out = bench(
        "simulate.py", "--model", "cnn", "--batch-size", "8", "--workers", "2", "--json", str(tmp_path / "s.json")
    )
    assert out.splitlines()[-1].split()[0] == "2"
    record = json.loads((tmp_path / "s.json").read_text())  # what the docs' performance page renders
    assert record["command"].startswith("python benchmarks/simulate.py --model cnn") and record["commit"]
    [(n, one, batched, ratio, diff)] = record["tables"][0]["rows"]
    assert n == 2 and ratio == pytest.approx(batched / one)  # the columns are what they say
    assert diff < 1e-3  # vmap's gradients are the one-by-one gradients up to float rounding


def test_every_recorded_benchmark_on_the_performance_page_is_one_the_page_renders():
    """docs/benchmarks/*.json are what the benchmarks wrote (--json); the page shows each, none typed by hand.
    A file is named after its benchmark, ``NAME.json``, or ``NAME.WHAT.json`` for another run of it."""
    folder = os.path.join(REPO, "docs", "benchmarks")
    page = open(os.path.join(REPO, "docs", "performance.md")).read()
    recorded = sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".json"))
    assert recorded and all(f"```{{benchmark-tables}} {stem}\n```" in page for stem in recorded)
    for stem in recorded:
        record = json.load(open(os.path.join(folder, f"{stem}.json")))
        name = stem.split(".")[0]
        assert record["benchmark"] == name and record["command"].startswith(f"python benchmarks/{name}.py")
        assert all(len(row) == len(t["columns"]) for t in record["tables"] for row in t["rows"])


def test_input_pipeline_benchmark(tmp_path):
    args = ["--images", "24", "--batch", "4", "--image-px", "64", "48", "--size", "32", "--model-size", "16"]
    out, (decoding, steps) = _recorded(tmp_path, "input_pipeline.py", *args, "--steps", "2")
    assert [r[0] for r in decoding["rows"]] == [1, 2] and all(r[1] > 0 for r in decoding["rows"])
    assert [r[0] for r in steps["rows"]] == [0, 2] and all(0 <= r[2] <= 1 for r in steps["rows"])
    assert "decode threads  images/s    over 1" in out  # the same tables, printed


@pytest.mark.ray
@pytest.mark.parametrize(
    "script,args,expect",
    [
        ("transfer.py", ["--sizes", "0.01", "--repeats", "2"], "2 copies: ray.put, gradient -> object store"),
        ("scaling.py", ["--actors", "1", "--model", "cnn", "--epochs", "1", "--num-workers", "2"], "server busy"),
    ],
)
def test_ray_benchmarks(script, args, expect):
    assert expect in bench(script, *args)


@pytest.mark.slow
def test_ray_executor_benchmark_on_one_node_and_across_two(tmp_path):
    args = ["--nodes", "1", "2", "--updates", "10", "--dim", "30000", "--repeats", "1"]
    out, (trial, server, across) = _recorded(tmp_path, "ray_executor.py", *args)
    epochs = _by_label(trial)
    assert list(epochs) == ["local", "ray P=1", "ray P=2"] and epochs["local"]["epoch/local"] == 1.0
    assert len({row["params_sha256"] for row in epochs.values()}) == 1  # the same numbers every way
    one = _by_label(server)
    assert {"ParameterServer, DANA N=2, 2 stub actors", "echo ceiling, 8 calls in flight, 2 echo actors"} <= set(one)
    assert one["echo ceiling, 2 calls in flight, 2 echo actors"]["of ceiling"] == 1.0
    two = _by_label(across, label_column=1)
    assert {
        "ParameterServer, results in order",
        "ParameterServer (pulls ahead)",
        "echo ceiling, pulled ahead",
        "sending alone (a float back), in order",
    } <= set(two)
    assert all(row["updates/s"] > 0 for row in [*one.values(), *two.values()])
    assert all(row["min"] <= row["updates/s"] <= row["max"] for row in two.values())
    in_order = [r for r in across["rows"] if r[1] == "ParameterServer, results in order"]
    ahead = [r for r in across["rows"] if r[1] == "ParameterServer (pulls ahead)"]
    assert [r[-1] for r in in_order] == ["0", "0"]  # the in-order server really takes its results in order
    assert int(ahead[-1][-1]) > 0  # N = 8: results in flight on the other node were pulled ahead
    assert "ParameterServer (pulls ahead)" in out  # the same tables, printed


@pytest.mark.slow
def test_sweep_overhead_benchmark(tmp_path):
    out, [table] = _recorded(tmp_path, "sweep_overhead.py", "--epochs", "1", "--executor", "local")
    rows = _by_label(table)
    local = rows["local executor, one after another"]["seconds"]
    swept = rows["python -m dana_ray.sweep, tune.executor local"]
    assert "9 trials" in out and swept["over the local loop"] == pytest.approx(swept["seconds"] / local)


LOCAL_CHECKS = [
    "local vmap", "local fused", "local vmap, TF32 off", "local dana-slim", "local async-diloco",
    "checkpoint, resume", "device: auto", "update d=0.27M", "update d=0.1M", "folder -> cnn", "divergence",
]  # fmt: skip
RAY_CHECKS = ["ray fused", "ray dana-slim", "ray 2 shards", "ray resume"]


def _gpu_check_rows(out: str) -> dict[str, list[str]]:
    """The markdown table's rows by check: images/s, updates/s, θ, BN stats, test errors, test loss, result."""
    rows = [line.strip("|").split("|") for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows[1:]}


@pytest.mark.slow
def test_gpu_check_runs_every_check_with_the_cpu_on_both_sides():
    """No GPU here: the script's every check runs with ``--device cpu`` (its comparisons are then CPU against
    CPU), so the script the first GPU session runs has run before; each row compares θ, the BatchNorm
    statistics, the test error and the test loss."""
    out = bench("gpu_check.py", "--device", "cpu", "--quick")
    rows = _gpu_check_rows(out)
    assert list(rows) == LOCAL_CHECKS + RAY_CHECKS, out
    assert all(cells[-1] == "ok" for cells in rows.values()), out
    for check in ("local vmap", "local dana-slim", "checkpoint, resume", "ray 2 shards", "ray resume"):
        theta, bn, errors, loss = rows[check][2:6]
        assert float(theta) < 1e-3 and float(bn) < 1e-2 and float(loss) < 1e-2 and " / " in errors, (check, out)
    assert "15 of 15 checks ok" in out and "skipped" not in out


def test_gpu_check_runs_without_ray_and_names_what_it_skipped():
    """The GPU machines this project is lent have PyTorch but no Ray: with ``ray`` unimportable, the script
    (from the source tree, no install) runs every check that needs none and names the others in one line."""
    hide_ray = (
        "import runpy, sys\n"
        "class HideRay:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'ray' or name.startswith('ray.'):\n"
        "            raise ImportError('hidden by the test')\n"
        "sys.meta_path.insert(0, HideRay())\n"
        "sys.argv = ['gpu_check.py', '--device', 'cpu', '--quick']\n"
        "runpy.run_path('benchmarks/gpu_check.py', run_name='__main__')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", hide_ray], cwd=REPO, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PYTHONPATH=REPO),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = _gpu_check_rows(done.stdout)
    assert list(rows) == LOCAL_CHECKS and all(cells[-1] == "ok" for cells in rows.values()), done.stdout
    skipped = [line for line in done.stdout.splitlines() if line.startswith("skipped: ")]
    assert skipped == [
        "skipped: ray fused, ray dana-slim, ray 2 shards, ray resume (ray cannot be imported (hidden by the test); "
        "the other checks need no Ray)"
    ], done.stdout
    assert "11 of 11 checks ok" in done.stdout


@pytest.mark.slow
def test_server_shards_benchmark_on_one_node_and_across_two(tmp_path):
    args = ["--nodes", "1", "2", "--dims", "30000", "--updates", "10", "--repeats", "1"]
    _, tables = _recorded(tmp_path, "server_shards.py", *args)
    assert len(tables) == 2
    for nodes, table in zip((1, 2), tables):
        [row] = _rows(table)
        assert row["d"] == 30000 and all(v > 0 for k, v in row.items() if k != "bound")
        assert row["K=2/K=1"] == pytest.approx(row["K=2 /s"] / row["K=1 /s"])
        assert row["B/update K=1"] == 8 * 30000 + 16  # a whole gradient and point through the one server
        assert row["B/update K=2"] == 32  # the sequencer's bytes per update (no BatchNorm in the stub)
        # on one node the bound is the machine's cores over those K = 1 keeps busy (across nodes none is
        # recorded: there sharding also cuts the bytes between nodes)
        if nodes == 2:
            assert row["bound"] is None
        else:
            assert row["bound"] == pytest.approx((os.cpu_count() or 1) / row["busy cores K=1"])


@pytest.mark.slow
def test_direct_transport_benchmark_is_exact_every_way(tmp_path):
    args = ["--dims", "30000", "--in-flight", "1", "2", "--trips", "5", "--repeats", "1"]
    _, [table] = _recorded(tmp_path, "direct_transport.py", *args)
    rows = _rows(table)
    ways = ["object store (numpy)", "object store (torch)", "RDT gloo"]
    assert [(r["in flight"], r["way"]) for r in rows] == [(n, way) for n in (1, 2) for way in ways]
    assert all(r["same sums"] == "yes" and r["trips/s"] > 0 for r in rows)
