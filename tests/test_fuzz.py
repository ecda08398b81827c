"""Bad input, generated: valid grids and trial flags mutated field by field (wrong types, out-of-range values,
unknown names). Whatever is refused is refused as one line on stderr with exit code 2, before Ray starts;
nothing raises a traceback. Mutations that happen to be valid are skipped (and counted)."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import yaml

from dana_ray.config import TrialConfig
from dana_ray.grid import GridError, load_grid

POOL = ["eight", -3, 1.5, True, None, [], {}, {"bogus": 1}, [-1], "nonexistent", float("nan"), 10**12]

BASE = {
    "description": "fuzz base",
    "trial": {"model": "cnn", "model_options": {"channels": 4}, "dataset": "digits", "epochs": 1, "batch_size": 64,
              "lr_decay_epochs": [1], "schedule_options": {"shape": 100.0, "slow_fraction": 0.5, "slow_factor": 2.0},
              "algorithm_options": {"dc_lambda": 0.1}, "cpu_threads": 1, "num_actors": 1, "cpus_per_actor": 0.25},
    "grid": {"algorithm": ["dc-asgd"], "num_workers": [2], "schedule": ["gamma"], "seed": [0]},
    "tune": {"max_failures": 1, "trial_cpus": 0.25, "checkpoint_every": 1},
}


def mutations():
    """(label, mutated grid): every value of the pool at every site."""
    sites = [("trial", f.name) for f in dataclasses.fields(TrialConfig)]
    sites += [("trial", options, key) for options in ("model_options", "schedule_options", "algorithm_options")
              for key in BASE["trial"][options]]
    sites += [("grid", axis) for axis in BASE["grid"]] + [("grid", axis, 0) for axis in BASE["grid"]]
    sites += [("tune", key) for key in ("max_failures", "trial_cpus", "checkpoint_every", "max_concurrent_trials")]
    sites += [("trial",), ("grid",), ("paper_table",)]
    for site in sites:
        for value in POOL:
            raw = copy.deepcopy(BASE)
            target = raw
            for key in site[:-1]:
                target = target[key]
            target[site[-1]] = copy.deepcopy(value)
            yield f"{'.'.join(map(str, site))}={value!r}", raw


def test_mutated_grids_are_refused_in_one_line_or_accepted(tmp_path, monkeypatch, capsys):
    import ray

    from dana_ray.sweep import main

    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray must not start for a bad grid"))
    refused = accepted = 0
    for label, raw in mutations():
        path = tmp_path / "fuzz.yaml"
        path.write_text(yaml.safe_dump(raw))
        try:
            load_grid(str(path))
        except GridError:
            pass
        except Exception as error:  # noqa: BLE001 - what the test is for
            pytest.fail(f"{label}: {type(error).__name__} instead of a one-line refusal: {error}")
        else:
            accepted += 1
            continue
        capsys.readouterr()
        assert main([str(path), "--storage", str(tmp_path / "results")]) == 2, label
        err = capsys.readouterr().err
        assert err.startswith("error: ") and len(err.splitlines()) == 1 and "Traceback" not in err, (label, err)
        refused += 1
    assert refused > 300 and accepted < refused / 4, (refused, accepted)


FLAG_VALUES = ["eight", "-3", "1.5", "nan", "", "nonexistent", "{}", "[]", '{"bogus": 1}', "1e12"]


def test_mutated_trial_flags_are_refused_in_one_line_or_accepted(monkeypatch, capsys):
    import dana_ray.trial as trial

    class Accepted(Exception):
        pass

    def accepted_run(*args, **kwargs):
        raise Accepted

    monkeypatch.setattr(trial, "run", accepted_run)
    flags = [a.option_strings[0] for a in trial._parser()._actions
             if a.option_strings and a.nargs != 0 and a.option_strings[0] not in ("-h", "--executor")]
    refused = 0
    for flag in flags:
        for value in FLAG_VALUES:
            capsys.readouterr()
            try:
                code = trial.main([flag, value, "--epochs", "1", "--quiet"])
            except SystemExit as stop:
                code = stop.code
            captured = capsys.readouterr()
            if code == 1 and "error:" in captured.err:  # a run was reached: the input was valid
                continue
            assert code == 2, (flag, value, code, captured.err)
            assert captured.err.startswith("error: ") and len(captured.err.splitlines()) == 1, (flag, value, captured.err)
            refused += 1
    assert refused > 100
