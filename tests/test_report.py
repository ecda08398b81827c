"""The report: the pure summary on a hand-made frame, the paper's numbers beside ours, the files."""

from __future__ import annotations

import io
import json
import math
import os

import pandas as pd
import pytest

from dana_ray.report import Report, delay_table, load_experiment, main, paper_tables, render, summarize, time_to_target
from dana_ray.report.timing import render_time_to_target


def trial(
    algorithm,
    workers,
    seed,
    error,
    diverged=False,
    finished=True,
    model="resnet20",
    dataset="cifar10",
    schedule="round-robin",
    delays=(),
):
    return dict(
        model=model,
        dataset=dataset,
        schedule=schedule,
        num_workers=workers,
        algorithm=algorithm,
        seed=seed,
        test_error=error,
        diverged=diverged,
        finished=finished,
        curve=[error],
        delay_histogram=list(delays),
    )


def frame():
    return pd.DataFrame(
        [
            trial("baseline", 1, 0, 8.0),
            trial("baseline", 1, 1, 9.0),
            trial("baseline", 1, 2, 10.0),
            trial("dana", 4, 0, 8.5),
            trial("dana", 4, 1, 8.7),
            trial("dana", 4, 2, 8.9),
            trial("asgd", 4, 0, 90.0, diverged=True),
            trial("asgd", 4, 1, 11.0),
            trial("asgd", 4, 2, 12.0),
            trial("nag-asgd", 4, 0, 9.0),
            trial("nag-asgd", 4, 1, 50.0, finished=False),  # seed 2 never ran
        ]
    )


def test_summary_statistics_and_flags():
    table = summarize(frame()).set_index(["num_workers", "algorithm"])
    assert table.loc[(1, "baseline"), "mean"] == pytest.approx(9.0)
    assert table.loc[(1, "baseline"), "std"] == pytest.approx(1.0)
    assert table.loc[(1, "baseline"), "n"] == 3 and table.loc[(1, "baseline"), "flags"] == ""
    # a diverged run counts, at its (chance-level) error, and flags the cell
    assert table.loc[(4, "asgd"), "mean"] == pytest.approx((90 + 11 + 12) / 3)
    assert table.loc[(4, "asgd"), "flags"] == "diverged" and table.loc[(4, "asgd"), "diverged"] == 1
    # unfinished runs do not count; fewer runs than seeds is flagged
    assert table.loc[(4, "nag-asgd"), "n"] == 1 and table.loc[(4, "nag-asgd"), "mean"] == 9.0
    assert table.loc[(4, "nag-asgd"), "flags"] == "incomplete"


def test_rows_are_workers_then_algorithms_in_registry_order():
    table = summarize(frame())
    assert list(zip(table["num_workers"], table["algorithm"])) == [
        (1, "baseline"),
        (4, "asgd"),
        (4, "nag-asgd"),
        (4, "dana"),
    ]


def test_a_cell_with_no_finished_run_is_listed_and_flagged():
    df = pd.DataFrame([trial("dana", 8, 0, math.nan, finished=False), trial("baseline", 1, 0, 8.0)])
    row = summarize(df).set_index("algorithm").loc["dana"]
    assert row["n"] == 0 and math.isnan(row["mean"]) and row["flags"] == "incomplete"


def test_paper_numbers_beside_ours():
    table = summarize(frame(), paper=paper_tables()).set_index(["num_workers", "algorithm"])
    assert table.loc[(4, "dana"), "paper_mean"] == 8.44 and table.loc[(4, "dana"), "paper_std"] == 0.15
    assert table.loc[(1, "baseline"), "paper_mean"] == 8.37 and table.loc[(4, "dana"), "paper_table"] == 3
    digits = summarize(pd.DataFrame([trial("dana", 4, 0, 5.0, model="cnn", dataset="digits")]), paper=paper_tables())
    assert math.isnan(digits.loc[0, "paper_mean"])


def test_wrn_names_match_the_papers():
    df = pd.DataFrame([trial("dana", 8, 0, 5.0, model="wrn-16-4", dataset="cifar100", schedule="block-random")])
    assert summarize(df, paper=paper_tables()).loc[0, "paper_mean"] == 23.93


def test_render_formats():
    md = render(frame(), "markdown")
    assert "### resnet20 on cifar10, round-robin" in md and "| 4 | dana | 8.70 | 0.20 | 3 | 8.44 | 0.15 |  |" in md
    csv = render(frame(), "csv")
    assert csv.splitlines()[0].startswith("model,dataset,schedule,num_workers,algorithm,mean,std,n")
    tex = render(frame(), "latex")
    assert r"\begin{tabular}" in tex and r"4 & dana & 8.70 & 0.20 & 3 & 8.44 & 0.15 &  \\" in tex
    with pytest.raises(ValueError, match="format: unknown name 'html'; allowed: markdown, csv, latex"):
        render(frame(), "html")


def write_experiment(root, trials):
    """The files Tune writes per trial: params.json (the trial's config) and result.json (one line/report)."""
    for k, (params, results) in enumerate(trials):
        folder = root / f"trial_{k}"
        folder.mkdir(parents=True)
        (folder / "params.json").write_text(json.dumps(params))
        (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in results))
    (root / "experiment_state.json").write_text("{}")  # not a trial folder: ignored
    return str(root)


def epochs(errors, diverged_at=None):
    return [
        {
            "epoch": e + 1,
            "test_error": err,
            "diverged": diverged_at == e + 1,
            "mean_delay": 3.0,
            "delay_histogram": [0, 0, 0, 4],
            "params_sha256": f"sha{e}",
        }
        for e, err in enumerate(errors)
    ]


def test_load_a_saved_experiment_and_write_the_report(tmp_path, capsys):
    fixed = {"model": "cnn", "dataset": "digits", "epochs": 3}
    path = write_experiment(
        tmp_path / "exp",
        [
            ({"cell": "baseline N=1", "schedule": "round-robin", "seed": 0, "_fixed": fixed}, epochs([20, 10, 5])),
            ({"cell": "dana N=4", "schedule": "round-robin", "seed": 0, "_fixed": fixed}, epochs([30, 12, 6])),
            ({"cell": "asgd N=4", "schedule": "round-robin", "seed": 0, "_fixed": fixed}, epochs([90], diverged_at=1)),
            ({"cell": "asgd N=4", "schedule": "round-robin", "seed": 1, "_fixed": fixed}, epochs([40])),  # interrupted
            # a trial restored from its checkpoint reported epoch 2 twice: the last report counts
            (
                {"cell": "dana N=4", "schedule": "round-robin", "seed": 1, "_fixed": fixed},
                epochs([30, 13]) + epochs([30, 11, 7])[1:],
            ),
        ],
    )
    trials = load_experiment(path).set_index(["algorithm", "seed"])
    assert trials.loc[("dana", 0), "test_error"] == 6 and trials.loc[("dana", 0), "finished"]
    assert trials.loc[("asgd", 0), "diverged"] and trials.loc[("asgd", 0), "finished"]
    assert not trials.loc[("asgd", 1), "finished"] and trials.loc[("asgd", 1), "epochs_done"] == 1
    assert trials.loc[("dana", 1), "curve"] == [30, 11, 7]

    out = tmp_path / "out"
    assert main([path, "--out", str(out)]) == 0  # printed: the compact tables, in the paper's layout
    compact = capsys.readouterr().out.split("\n\n")
    assert compact[0].splitlines()[1:] == [  # asgd: seed 0 diverged, seed 1 unfinished
        "N  baseline  asgd     dana",
        "1  5.00*",
        "4            90.00†*  6.50 ± 0.71",
        "† diverged; * incomplete",
    ]
    assert compact[1].splitlines()[2:] == ["N  asgd            dana", "4  +85.00 / +2.63  +1.50 / +0.07 #"]
    assert main([path, "--out", str(out), "--format", "markdown"]) == 0
    printed = capsys.readouterr().out
    assert (
        "| 4 | dana | 6.50 | 0.71 | 2 |" in printed
        and "| 4 | asgd | 90.00 |  | 1 |  |  | diverged, incomplete |" in printed
    )
    assert "| cnn | digits | round-robin | 4 | dana | 24 | 3.00 | 3 | 3 | 3 | 3 |" in printed  # 6 epochs x 4
    for name in (
        "summary.csv",
        "summary.tex",
        "summary.md",
        "shape.csv",
        "error_vs_workers.png",
        "curves_largest_n.png",
        "delays.csv",
        "delays_largest_n.png",
    ):
        assert os.path.getsize(out / name) > 0, name
    assert (out / "error_vs_workers.png").read_bytes()[:4] == b"\x89PNG"


def test_delay_table_from_histograms_over_seeds():
    trials = pd.DataFrame(
        [
            trial("dana", 4, 0, 8.0, delays=[1, 0, 0, 7]),  # delays: 0 once, 3 seven times
            trial("dana", 4, 1, 8.0, delays=[0, 0, 1, 1, 0, 0]),  # 2 once, 3 once
            trial("asgd", 4, 0, 9.0, delays=[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1] + [0] * 5),
        ]
    )
    table = delay_table(trials).set_index("algorithm")
    dana = table.loc["dana"]
    assert dana["gradients"] == 10 and dana["mean"] == pytest.approx((2 + 3 * 8) / 10)
    assert (dana["p50"], dana["p90"], dana["p99"], dana["max"]) == (3, 3, 3, 3)
    assert table.loc["asgd", "max"] == 10 and table.loc["asgd", "p50"] == 10
    assert list(table.index) == ["asgd", "dana"]  # registry order


def test_report_of_a_missing_directory_exits_2(tmp_path, capsys):
    assert main([str(tmp_path / "nothing")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error:") and len(captured.err.splitlines()) == 1


def test_shape_compares_degradation_from_each_sides_baseline():
    """A digits run has no paper cells of its own: it is read against the paper table of its schedule
    (round robin: Table 3). Paper: baseline 8.37 ± .22; ASGD N=4 11.00 ± .17 (+2.63, "+"); DANA N=4
    8.44 ± .15 (+.07, within .22: "="); NAG-ASGD N=16 83.27 (+74.90)."""
    from dana_ray.report import shape_table

    df = pd.DataFrame(
        [trial("baseline", 1, s, e, model="cnn", dataset="digits") for s, e in enumerate((1.0, 1.2, 1.4))]
        + [trial("asgd", 4, s, e, model="cnn", dataset="digits") for s, e in enumerate((6.0, 6.2, 6.4))]
        + [trial("dana", 4, s, e, model="cnn", dataset="digits") for s, e in enumerate((1.1, 1.3, 1.5))]
        + [trial("nag-asgd", 16, s, e, model="cnn", dataset="digits") for s, e in enumerate((30, 40, 50))]
        + [trial("dana", 16, s, e, model="cnn", dataset="digits") for s, e in enumerate((3, 4, 5))]
    )
    shape = shape_table(summarize(df, paper=paper_tables()), paper_tables()).set_index(["num_workers", "algorithm"])
    assert set(shape["paper_table"]) == {3}
    asgd, dana4 = shape.loc[(4, "asgd")], shape.loc[(4, "dana")]
    assert asgd["ours"] == pytest.approx(5.0) and asgd["paper"] == pytest.approx(2.63)
    assert (asgd["ours_sign"], asgd["paper_sign"], asgd["signs_agree"]) == ("+", "+", True)
    assert dana4["ours"] == pytest.approx(0.1) and dana4["paper"] == pytest.approx(0.07)
    assert (dana4["ours_sign"], dana4["paper_sign"]) == ("=", "=")
    assert (asgd["ours_rank"], asgd["paper_rank"], dana4["ours_rank"], dana4["paper_rank"]) == (2, 2, 1, 1)
    assert shape.loc[(16, "nag-asgd"), "paper"] == pytest.approx(83.27 - 8.37)
    assert (shape.loc[(16, "dana"), "ours_rank"], shape.loc[(16, "nag-asgd"), "ours_rank"]) == (1, 2)
    printed = render(df)
    assert "Shape against the paper's Table 3" in printed and "signs agree in 4 of 4 cells" in printed
    assert "| 4 | asgd | +5.00 | +2.63 | + / + | yes | 2 / 2 |" in printed


def test_no_shape_for_a_schedule_the_paper_has_no_table_of():
    from dana_ray.report import shape_table

    df = pd.DataFrame([trial("baseline", 1, 0, 1.0, schedule="gamma"), trial("dana", 4, 0, 2.0, schedule="gamma")])
    assert shape_table(summarize(df, paper=paper_tables()), paper_tables()).empty


def test_the_grid_the_sweep_ran_makes_missing_seeds_and_cells_visible(tmp_path):
    """The experiment folder's grid.yaml asks for seeds 0 and 1 of baseline, dana N=4 and dana N=8; only
    three trials reported: dana N=4 has 1 of 2 seeds, dana N=8 none. Both are flagged, neither is hidden."""
    from dana_ray.experiments.folder import GRID_FILE

    fixed = {"model": "cnn", "dataset": "digits", "epochs": 1}
    path = write_experiment(
        tmp_path / "exp",
        [
            ({"cell": "baseline N=1", "schedule": "round-robin", "seed": s, "_fixed": fixed}, epochs([5.0 + s]))
            for s in (0, 1)
        ]
        + [({"cell": "dana N=4", "schedule": "round-robin", "seed": 0, "_fixed": fixed}, epochs([6.0]))],
    )
    (tmp_path / "exp" / GRID_FILE).write_text(
        "trial: {model: cnn, dataset: digits, epochs: 1}\n"
        "grid: {algorithm: [baseline, dana], num_workers: [4, 8], schedule: [round-robin], seed: [0, 1]}\n"
    )
    table = summarize(load_experiment(path)).set_index(["num_workers", "algorithm"])
    assert table.loc[(1, "baseline"), "n"] == 2 and table.loc[(1, "baseline"), "flags"] == ""
    assert table.loc[(4, "dana"), "n"] == 1 and table.loc[(4, "dana"), "flags"] == "incomplete"
    assert table.loc[(8, "dana"), "n"] == 0 and table.loc[(8, "dana"), "flags"] == "incomplete"


def test_a_trial_whose_files_cannot_be_read_is_listed_and_the_rest_is_reported(tmp_path, capsys):
    """As a full disk leaves them: one trial's params.json empty, another's result.json not UTF-8, a third's
    params.json missing. Each is listed by path with its reason, its cell (told from the folder's name) is
    flagged broken, and the readable trials make the report (the CLI exits 0)."""
    from dana_ray.experiments.folder import GRID_FILE

    fixed = {"model": "cnn", "dataset": "digits", "epochs": 1}
    root = tmp_path / "exp"
    path = write_experiment(
        root,
        [
            ({"cell": "baseline N=1", "schedule": "round-robin", "seed": s, "_fixed": fixed}, epochs([5.0 + s]))
            for s in (0, 1)
        ]
        + [({"cell": "dana N=4", "schedule": "round-robin", "seed": 0, "_fixed": fixed}, epochs([6.0]))],
    )
    (root / GRID_FILE).write_text(
        "trial: {model: cnn, dataset: digits, epochs: 1}\n"
        "grid: {algorithm: [baseline, dana, asgd], num_workers: [4], schedule: [round-robin], seed: [0, 1]}\n"
    )
    empty = root / "dana_N4_round-robin_s1_35819_00001"  # Tune's trial ids hold an underscore
    empty.mkdir()
    (empty / "params.json").write_text("")
    garbled = root / "asgd_N4_round-robin_s0_35819_00002"
    garbled.mkdir()
    (garbled / "params.json").write_text(
        json.dumps({"cell": "asgd N=4", "schedule": "round-robin", "seed": 0, "_fixed": fixed})
    )
    (garbled / "result.json").write_bytes(b"\xff\xfe\x00garbage")
    unnamed = root / "left-over"
    unnamed.mkdir()
    (unnamed / "result.json").write_text("")

    trials = load_experiment(path)
    reasons = dict(trials.attrs["broken"])
    assert reasons[str(empty)] == f"{empty}/params.json: empty"
    assert reasons[str(garbled)].startswith(f"{garbled}/result.json: ") and "codec" in reasons[str(garbled)]
    assert reasons[str(unnamed)] == f"{unnamed}/params.json: missing"
    table = summarize(trials).set_index(["num_workers", "algorithm"])
    assert table.loc[(1, "baseline"), "flags"] == "" and table.loc[(1, "baseline"), "n"] == 2
    assert table.loc[(4, "dana"), "n"] == 1 and table.loc[(4, "dana"), "flags"] == "incomplete, broken"
    assert table.loc[(4, "asgd"), "n"] == 0 and table.loc[(4, "asgd"), "flags"] == "incomplete, broken"

    assert main([path, "--out", str(tmp_path / "out"), "--format", "markdown"]) == 0
    captured = capsys.readouterr()
    notices = [line for line in captured.err.splitlines() if line]
    assert notices[0].startswith("3 of 6 trials finished") and all(n.startswith("wrote ") for n in notices[1:])
    assert "Traceback" not in captured.out + captured.err
    assert "### Trials whose files cannot be read" in captured.out
    assert f"- {empty}: {empty}/params.json: empty" in captured.out
    assert "| 4 | dana | 6.00 |  | 1 |" in captured.out
    assert "broken" in (tmp_path / "out" / "summary.csv").read_text()


def test_a_cut_result_line_is_broken_and_listed_and_a_trial_never_started_is_pending(tmp_path, capsys):
    """A result.json whose last line was cut (the trial finished all 3 epochs, then the file lost its tail)
    is not silently shortened: the trial is flagged broken and listed with the line. A folder Tune named
    but never started (no files: the experiment was interrupted first) is a pending trial: its cell is
    incomplete, nothing is broken or listed, and the report says how many trials finished."""
    from dana_ray.experiments.folder import GRID_FILE

    fixed = {"model": "cnn", "dataset": "digits", "epochs": 3}
    root = tmp_path / "exp"
    path = write_experiment(
        root,
        [
            ({"cell": "dana N=4", "schedule": "round-robin", "seed": s, "_fixed": fixed}, epochs([7.0, 6.0, 5.0]))
            for s in (0, 1)
        ],
    )
    (root / GRID_FILE).write_text(
        "trial: {model: cnn, dataset: digits, epochs: 3}\n"
        "grid: {algorithm: [dana], num_workers: [4], schedule: [round-robin], seed: [0, 1, 2]}\n"
    )
    cut = root / "trial_1" / "result.json"
    cut.write_text(cut.read_text()[:-20])
    (root / "dana_N4_round-robin_s2_35819_00002").mkdir()  # never started

    trials = load_experiment(path)
    assert trials.attrs["broken"] == [
        (str(root / "trial_1"), f"{cut}: line 3 is not a JSON object (the file was cut or overwritten)")
    ]
    table = summarize(trials).set_index(["num_workers", "algorithm"])
    assert table.loc[(4, "dana"), "n"] == 1 and table.loc[(4, "dana"), "flags"] == "incomplete, broken"

    (root / "trial_1" / "result.json").write_text("".join(json.dumps(r) + "\n" for r in epochs([7.0, 6.0, 5.0])))
    assert main([path, "--out", str(tmp_path / "out"), "--format", "markdown"]) == 0
    out, err = capsys.readouterr()
    assert "cannot be read" not in out and "broken" not in out
    assert "| 4 | dana | 5.00 | 0.00 | 2 |" in out and err.rstrip().splitlines()[-1].startswith("wrote ")
    assert "2 of 3 trials finished; cells flagged incomplete have fewer finished seeds than the grid asks" in err


def timed(errors, times, **row):
    """A finished trial's row with its per-epoch errors and simulated times."""
    base = dict(model="cnn", dataset="digits", schedule="gamma", num_workers=4, algorithm="asgd", seed=0)
    base.update(finished=True, diverged=False, test_error=errors[-1], curve=errors, sim_times=times, wall_times=[])
    base.update(delay_histogram=[], broken="")
    return dict(base, **row)


def test_time_to_target_is_the_first_epoch_at_the_baselines_final_error_plus_the_tolerance():
    trials = pd.DataFrame(
        [
            timed([20, 10, 5], [100, 200, 300], algorithm="baseline", num_workers=1, seed=0),
            timed([20, 10, 7], [100, 200, 300], algorithm="baseline", num_workers=1, seed=1),  # mean 6: target 7
            timed([30, 6.5, 6], [25, 50, 75], algorithm="asgd", seed=0),
            timed([30, 8, 7], [25, 50, 75], algorithm="asgd", seed=1),
            timed([30, 9, 6.9], [60, 120, 180], algorithm="ssgd", seed=0),
            timed([30, 7, 5], [60, 120, 180], algorithm="ssgd", seed=1),
            timed([40, 30, 20], [25, 50, 75], algorithm="dana", seed=0),
        ]
    )
    table = time_to_target(trials).set_index("algorithm")
    assert (table["target"] == 7.0).all() and (table["clock"] == "sim_time").all()
    assert table.loc["baseline", "time"] == 300 and table.loc["baseline", "epochs"] == 3
    assert table.loc["asgd", "time"] == 62.5 and table.loc["asgd", "epochs"] == 2.5  # epochs 2 and 3
    assert table.loc["asgd", "time_std"] == pytest.approx(math.sqrt(2 * 12.5**2))
    assert table.loc["asgd", "speedup_vs_baseline"] == 300 / 62.5
    assert table.loc["asgd", "speedup_vs_sync"] == 150 / 62.5 and table.loc["ssgd", "speedup_vs_sync"] == 1.0
    assert table.loc["dana", "reached"] == 0 and math.isnan(table.loc["dana", "time"])
    assert math.isnan(table.loc["dana", "speedup_vs_baseline"])
    text = Report(trials).render()
    assert "### Time to target: cnn on digits, gamma (test error <= 7.00 %, the baseline's final mean + 1" in text
    assert "| 4 | dana | not reached |  |  | 0 of 1 |  |  |" in text
    assert "| 4 | asgd | 62.5 | 17.7 | 2.5 | 2 of 2 | 4.80 | 2.40 |" in text


def test_a_given_target_error_applies_to_every_group_and_arrival_uses_wall_time():
    trials = pd.DataFrame(
        [
            timed([20, 10], [1, 2], schedule="arrival", wall_times=[3.0, 6.0]),
            timed([20, 10], [1, 2], schedule="round-robin", algorithm="dana"),
        ]
    )
    assert "in seconds (wall_time))" in render_time_to_target(time_to_target(trials, 15.0)[:1], 15.0, 1.0)
    traced = time_to_target(trials.assign(schedule="trace"), 15.0)
    assert "in simulated seconds (the trace's))" in render_time_to_target(traced, 15.0, 1.0)
    table = time_to_target(trials, target_error=15.0).set_index("schedule")
    assert table.loc["arrival", "clock"] == "wall_time" and table.loc["arrival", "time"] == 6.0
    assert table.loc["round-robin", "time"] == 2 and math.isnan(table.loc["round-robin", "speedup_vs_baseline"])
    assert len(time_to_target(trials)) == 0  # no baseline, no target given: nothing to measure against


def test_the_report_command_takes_a_target_error_and_writes_the_time_plot(tmp_path, capsys):
    fixed = {"model": "cnn", "dataset": "digits", "epochs": 2}
    rows = lambda errors, times: [dict(r, sim_time=t, wall_time=t / 10) for r, t in zip(epochs(errors), times)]
    path = write_experiment(
        tmp_path / "exp",
        [
            ({"cell": "baseline N=1", "schedule": "gamma", "seed": 0, "_fixed": fixed}, rows([20, 10], [10, 20])),
            ({"cell": "dana N=4", "schedule": "gamma", "seed": 0, "_fixed": fixed}, rows([30, 12], [3, 6])),
        ],
    )
    out = tmp_path / "out"
    assert main([path, "--out", str(out), "--target-error", "15"]) == 0
    compact = capsys.readouterr().out.split("\n\n")[-1].splitlines()
    assert compact == [
        "time to test error <= 15.00 % in simulated time units (speedup over the baseline; - not reached)",
        "N  baseline      dana",
        "1  20.0 (1.00x)",
        "4                6.0 (3.33x)",
    ]
    assert main([path, "--out", str(out), "--target-error", "15", "--format", "markdown"]) == 0
    printed = capsys.readouterr().out
    assert "(test error <= 15.00 %, given; in simulated time units)" in printed
    assert "| 4 | dana | 6.0 |  | 2.0 | 1 of 1 | 3.33 |\n" in printed  # no SSGD ran: no column for it
    assert (out / "error_vs_time_largest_n.png").read_bytes()[:4] == b"\x89PNG"
    assert pd.read_csv(out / "time_to_target.csv")["time"].tolist() == [20.0, 6.0]


def test_the_csv_format_on_standard_output_is_csv_alone(tmp_path, capsys):
    """``--format csv > out.csv`` makes a CSV file: what was written, and how many trials finished, go to
    standard error."""
    fixed = {"model": "cnn", "dataset": "digits", "epochs": 2}
    path = write_experiment(
        tmp_path / "exp",
        [
            ({"cell": "baseline N=1", "schedule": "round-robin", "seed": 0, "_fixed": fixed}, epochs([20, 10])),
            ({"cell": "dana N=4", "schedule": "round-robin", "seed": 0, "_fixed": fixed}, epochs([30])),
        ],
    )
    assert main([path, "--format", "csv", "--out", str(tmp_path / "out")]) == 0
    out, err = capsys.readouterr()
    table = pd.read_csv(io.StringIO(out))
    assert list(table["algorithm"]) == ["baseline", "dana"] and table.loc[0, "mean"] == 10.0
    assert "wrote " in err and "1 of 2 trials finished" in err


def test_plots_tell_the_builtin_rules_apart_and_stay_on_a_laptop_screen(tmp_path):
    from PIL import Image

    from dana_ray.algorithms import BUILTIN_ALGORITHMS
    from dana_ray.report.plots import _color, _marker, plot_delays

    assert len({(_color(a), _marker(a)) for a in BUILTIN_ALGORITHMS}) == len(BUILTIN_ALGORITHMS) >= 14
    assert len({_color(a) for a in BUILTIN_ALGORITHMS}) == len(BUILTIN_ALGORITHMS)
    rules = [a for a in BUILTIN_ALGORITHMS if a != "baseline"]
    trials = pd.DataFrame(
        [timed([5.0], [1.0], algorithm=a, delay_histogram=[1, 2, 3]) for a in rules]  # one panel per rule
    )
    [path] = plot_delays(trials, str(tmp_path / "delays.png"))
    width, height = Image.open(path).size
    assert width <= 2000 and height <= 2000


def test_the_workers_axis_is_labelled_with_the_grids_n_alone(tmp_path, monkeypatch):
    """N = 4 and 16 on a log axis: ticks at 4 and 16 and no others (matplotlib labelled a minor tick at 6 as
    "6 x 10^0" where the axis spans under a decade)."""
    from dana_ray.report import plots

    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, axes, path: drawn.extend(axes) or [path])
    summary = pd.DataFrame(
        [dict(model="cnn", dataset="digits", schedule="round-robin", algorithm=a, num_workers=n, mean=5.0, std=0.5)
         for a in ("asgd", "dana") for n in (4, 16)]
    )  # fmt: skip
    plots.plot_error_vs_workers(summary, str(tmp_path / "e.png"))
    [ax] = drawn
    assert list(ax.get_xticks()) == [4, 16] and [t.get_text() for t in ax.get_xticklabels()] == ["4", "16"]
    assert len(ax.get_xticks(minor=True)) == 0


def test_a_time_to_target_some_seeds_missed_says_how_many_and_claims_no_speedup():
    from dana_ray.report.render import _time_cell

    row = lambda **k: pd.Series(dict({"time": 154.0, "reached": 3, "n": 3, "speedup_vs_baseline": 1.71}, **k))
    assert _time_cell(row()) == "154.0 (1.71x)"
    assert _time_cell(row(reached=1, speedup_vs_baseline=math.nan)) == "154.0 (1 of 3 seeds)"
    assert _time_cell(row(time=math.nan, reached=0)) == "-"


def test_the_compact_report_shows_the_papers_cells_and_shape_where_the_paper_has_that_table():
    """ResNet-20 on CIFAR-10, round robin: the paper's Table 3 beside ours, in the same layout."""
    blocks = render(frame(), "text").split("\n\n")
    assert blocks[0].splitlines()[1:3] == ["N  baseline     asgd            nag-asgd  dana", "1  9.00 ± 1.00"]
    assert blocks[1].splitlines() == [
        "the paper's Table 3, the same cells:",
        "N  baseline     asgd          nag-asgd     dana",
        "1  8.37 ± 0.22",
        "4               11.00 ± 0.17  8.50 ± 0.27  8.44 ± 0.15",
    ]
    assert blocks[2].startswith("shape against the paper's Table 3") and "agree in 2 of 3 cells" in blocks[2]
    digits = frame().assign(model="cnn", dataset="digits")
    assert "the paper's Table 3, the same cells" not in render(digits, "text")  # the digits: the shape alone
