"""dana_ray.trial.run: results, determinism, divergence, config validation, the real loaders end to end."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import trial_dict

from dana_ray.config import TrialConfig
from dana_ray.schedules.lr import step_decay
from dana_ray.trial import main, run

FAST = dict(
    model="cnn", model_options={"channels": 8}, dataset="digits", batch_size=32, epochs=2, lr=0.05, lr_decay_epochs=[]
)


def test_result_has_every_promised_key_and_sane_values():
    rows = []
    result = run(dict(FAST, algorithm="dana", num_workers=4), callback=rows.append)
    for key in ("test_error", "train_loss", "diverged", "steps", "epochs", "mean_delay", "params_sha256"):
        assert key in result
    assert result["steps"] == 2 * (1437 // 32) and result["epochs"] == 2
    assert result["diverged"] is False and 0 <= result["test_error"] < 50
    assert len(result["params_sha256"]) == 64
    assert [r["epoch"] for r in rows] == [1, 2] and rows == result["history"]
    for key in ("test_error", "train_loss", "mean_delay", "max_delay", "mean_gap", "gradients_per_s"):
        assert math.isfinite(rows[-1][key]), key
    assert rows[-1]["max_delay"] == 3


@pytest.mark.parametrize("schedule", ["round-robin", "block-random", "gamma"])
def test_same_config_same_parameters(schedule):
    config = dict(FAST, algorithm="dana", num_workers=4, schedule=schedule, epochs=1)
    first = run(config)
    assert run(config)["params_sha256"] == first["params_sha256"]
    assert run(dict(config, seed=1))["params_sha256"] != first["params_sha256"]


def test_with_one_worker_the_rules_collapse_to_their_single_worker_forms():
    """N = 1, bitwise: the rules that declare momentum SGD give one outcome, the Nesterov ones another, the
    momentum-free ones (asgd, dc-asgd) a third; asgd-momentum is the baseline."""
    from dana_ray.algorithms import ALGORITHMS, BUILTIN_ALGORITHMS

    forms: dict = {}
    for name in BUILTIN_ALGORITHMS:
        form = ALGORITHMS[name].single_worker_form
        # dana-slim evaluates x; a local-steps rule takes its form under other options, up to rounding
        rule = ALGORITHMS[name]
        if form is not None and not rule.make_worker_side(0.9, rule.resolved_options({})):
            sha = run(dict(FAST, algorithm=name, num_workers=1, epochs=1))["params_sha256"]
            forms.setdefault(form, set()).add(sha)
    assert {form: len(shas) for form, shas in forms.items()} == {"sgd": 1, "momentum": 1, "nesterov": 1}
    assert len(set.union(*forms.values())) == 3


def test_every_algorithm_learns_the_digits_with_one_worker():
    from dana_ray.algorithms import ALGORITHMS

    for name in ALGORITHMS:  # each in its single-worker form (a local-steps rule: one step, a plain outer step)
        result = run(
            dict(
                FAST,
                model_options={},
                lr=0.1,
                algorithm=name,
                num_workers=1,
                epochs=3,
                algorithm_options=ALGORITHMS[name].single_worker_options,
            )
        )
        assert result["test_error"] < 15, (name, result["test_error"])  # chance: 90


def test_local_steps_learn_the_digits_and_match_their_synchronous_form():
    """diloco with one local step and a plain outer step is SSGD up to rounding (same test error here); with
    H = 4 it learns too, an epoch being a quarter as many jobs (same data)."""
    config = dict(FAST, num_workers=4, epochs=8)
    ssgd = run(dict(config, algorithm="ssgd"))
    plain = dict(local_steps=1, outer_lr=1.0, outer_momentum=0.0)
    one_step = run(dict(config, algorithm="diloco", algorithm_options=plain))
    assert one_step["test_error"] == ssgd["test_error"] and one_step["steps"] == ssgd["steps"]
    rows: list = []
    four = run(dict(config, algorithm="diloco", algorithm_options=dict(plain, local_steps=4)), callback=rows.append)
    assert four["steps"] == 8 * (1437 // 32 // 4) and four["test_error"] < 25, four["test_error"]
    assert rows[0]["gradients"] == 1437 // 32 // 4


def test_divergence_ends_the_run_at_chance_level():
    rows = []
    result = run(dict(FAST, algorithm="asgd", num_workers=2, lr=1e6, epochs=3), callback=rows.append)
    assert result["diverged"] is True
    assert result["test_error"] == pytest.approx(90.0)
    assert result["steps"] < 3 * (1437 // 32) and result["epochs"] == 0
    assert rows[-1]["diverged"] is True


def test_lr_step_decay_and_warmup_from_almost_zero():
    lr = step_decay(
        0.1, steps_per_epoch=10, decay_epochs=[2, 3], decay_factor=0.1, warmup_epochs=1, warmup_start="lr/steps"
    )
    assert [round(lr(s), 6) for s in (0, 4, 9, 10, 19, 20, 29, 30)] == [0.01, 0.05, 0.1, 0.1, 0.1, 0.01, 0.01, 0.001]


def test_warmup_from_lr_over_n_is_the_authors_linspace():
    """The DANA authors' simulator: ``np.linspace(lr / N, lr, steps_per_epoch * warmup_epochs)``, then lr; by
    hand for N = 4 over 10 steps: .025 at step 0, .05 at step 3, .1 at step 9. With one worker, no warm-up."""
    import numpy as np

    lr = step_decay(0.1, steps_per_epoch=5, decay_epochs=[4], warmup_epochs=2, warmup_start="lr/N", num_workers=4)
    assert [lr(s) for s in range(10)] == pytest.approx(np.linspace(0.1 / 4, 0.1, 10).tolist(), rel=1e-12)
    assert (lr(0), lr(3), lr(9), lr(10), lr(19), lr(20)) == pytest.approx((0.025, 0.05, 0.1, 0.1, 0.1, 0.01))
    one = step_decay(0.1, steps_per_epoch=5, warmup_epochs=2, warmup_start="lr/N", num_workers=1)
    assert {one(s) for s in range(12)} == {0.1}


def test_warmup_reaches_a_run():
    rows = []
    run(dict(FAST, algorithm="dana", num_workers=4, epochs=2, lr=0.04, warmup_epochs=1), callback=rows.append)
    assert [r["lr"] for r in rows] == [0.04, 0.04]  # warmed up after the first epoch (lr: at the next step)
    run(dict(FAST, algorithm="dana", num_workers=4, epochs=1, lr=0.04, warmup_epochs=2), callback=rows.append)
    assert 0.01 < rows[-1]["lr"] < 0.04


def test_decay_applies_inside_a_run():
    rows = []
    run(dict(FAST, epochs=3, lr=0.05, lr_decay_epochs=[1, 2], lr_decay_factor=0.5), callback=rows.append)
    assert [r["lr"] for r in rows] == [0.025, 0.0125, 0.0125]


# -- validation before any work -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(optimizer="sgd"), r"config: unknown key 'optimizer'; allowed: model, model_options"),
        (dict(algorithm="adam"), r"algorithm: unknown name 'adam'; allowed: baseline, ssgd, asgd, asgd-momentum"),
        (
            dict(schedule="fifo"),
            r"schedule: unknown name 'fifo'; allowed: round-robin, block-random, gamma, trace, arrival",
        ),
        (trial_dict(num_actors=0), r"num_actors: expected an integer >= 1, got 0"),
        (trial_dict(gpus_per_actor=-1), r"gpus_per_actor: expected a finite number >= 0.0, got -1"),
        (dict(model="vgg"), r"model: unknown name 'vgg'"),
        (dict(dataset="mnist"), r"dataset: unknown name 'mnist'"),
        (dict(num_workers=0), r"num_workers: expected an integer in \[1, 65536\], got 0"),
        (dict(algorithm="baseline", num_workers=4), r"num_workers: algorithm 'baseline' takes exactly 1 worker, got 4"),
        (dict(warmup_start="zero"), r"warmup_start: unknown name 'zero'; allowed: lr/N, lr/steps"),
        (dict(weight_decay_at="server"), r"weight_decay_at: unknown name 'server'; allowed: worker, master"),
        (dict(momentum=1.5), r"momentum: expected a finite number in \[0.0, 1.0\), got 1.5"),
        (dict(lr=-1), r"lr: expected a finite number >= 0.0, got -1"),
        (dict(lr=float("nan")), r"lr: expected a finite number >= 0.0, got nan"),
        (dict(epochs=1.5), r"epochs: expected an integer >= 1, got 1.5"),
        (dict(seed=-1), r"seed: expected an integer >= 0, got -1"),
        (trial_dict(fused_updates="yes"), r"fused_updates: expected true or false, got 'yes'"),
        (dict(lr_decay_epochs=[10, -1]), r"lr_decay_epochs: expected a list of epochs > 0"),
        (
            dict(schedule_options={"shape": 2}),
            r"schedule_options: unknown option 'shape' for 'round-robin'; allowed: none",
        ),
        (dict(model_options={"depth": 2}), r"model_options: unknown option 'depth' for 'cnn'; allowed: channels"),
        (trial_dict(device="tpu"), r"device: unknown name 'tpu'; allowed: auto, cpu, cuda"),
        (dict(dataset="cifar10"), r"data_dir: dataset 'cifar10' needs a data directory"),
    ],
)
def test_bad_config_is_refused_naming_the_field(change, match):
    with pytest.raises(ValueError, match=match):
        TrialConfig.from_dict(dict(FAST, **change))


def test_missing_data_is_refused_naming_host_and_path():
    with pytest.raises(
        ValueError,
        match=r"data_dir: cifar10 needs the directory '/nonexistent/cifar/cifar-10-batches-py', "
        r"which does not exist \(on host ",
    ):
        run(dict(FAST, model="resnet20", model_options={}, dataset="cifar10", data_dir="/nonexistent/cifar"))


def test_batch_larger_than_the_data_is_refused():
    with pytest.raises(ValueError, match=r"batch_size: 5000 is larger than the digits training set \(1437"):
        run(dict(FAST, batch_size=5000))


def test_arrival_order_needs_an_executor_that_takes_it():
    with pytest.raises(
        ValueError,
        match=r"^schedule: 'arrival' is the real order gradients reach a server; executor "
        r"'local' follows a seeded schedule \(executors that take 'arrival': ray(, .+)?\)$",
    ):
        run(dict(FAST, schedule="arrival"))


def test_resume_from_a_checkpoint_finishes_identically():
    config = dict(FAST, algorithm="dana", num_workers=3, schedule="gamma", epochs=3)
    states = []
    whole = run(config, checkpoint=states.append)
    assert [s["epoch"] for s in states] == [1, 2, 3]
    resumed = run(config, resume=states[0])
    assert resumed["params_sha256"] == whole["params_sha256"]
    # the training's numbers; not its timing, nor whether this run handed out a checkpoint
    timeless = lambda rows: [
        {k: v for k, v in r.items() if k not in ("gradients_per_s", "wall_time", "checkpointed")} for r in rows
    ]
    assert timeless(resumed["history"]) == timeless(whole["history"])
    assert resumed["mean_delay"] == whole["mean_delay"] and resumed["steps"] == whole["steps"]


@pytest.mark.parametrize("algorithm", ["dana-slim", "dana-dc", "diloco", "async-diloco"])
def test_resume_restores_worker_side_and_compensation_state(algorithm):
    """dana-slim's momenta and the local-steps rules' inner optimizers live with the workers, dana-dc's points
    with the master's outstanding jobs: all are saved (diloco's mid-round too: 44 // 4 jobs an epoch)."""
    config = dict(FAST, algorithm=algorithm, num_workers=4, schedule="gamma", epochs=2)
    states = []
    whole = run(config, checkpoint=states.append)
    assert bool(states[0]["master"]["worker_side"]) == (algorithm != "dana-dc")
    assert run(config, resume=states[0])["params_sha256"] == whole["params_sha256"]


def test_dana_slim_trains_like_dana_under_a_constant_lr():
    """Same points sent, same batches: the two runs differ only by rounding and by what is evaluated (DANA's
    θ, DANA-Slim's look-ahead), so their training losses agree closely."""
    config = dict(FAST, num_workers=4, epochs=2, lr_decay_epochs=[])
    dana, slim = run(dict(config, algorithm="dana")), run(dict(config, algorithm="dana-slim"))
    for a, b in zip(dana["history"], slim["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-3)
    assert abs(dana["test_error"] - slim["test_error"]) < 2.0


def test_checkpoint_every_k_epochs_and_the_last():
    states = []
    run(dict(FAST, epochs=5), checkpoint=states.append, checkpoint_every=2)
    assert [s["epoch"] for s in states] == [2, 4, 5]


def test_cpu_threads_is_set_for_the_run_and_restored():
    import torch

    before = torch.get_num_threads()
    seen = []
    run(trial_dict(FAST, epochs=1, cpu_threads=1), callback=lambda row: seen.append(torch.get_num_threads()))
    assert seen == [1] and torch.get_num_threads() == before
    # unset: as many as a gradient actor reserving cpus_per_actor computes on (the Ray executor's numbers)
    for cpus, threads in [(1.0, 1), (2.0, 2), (0.25, 1)]:
        seen.clear()
        run(trial_dict(FAST, epochs=1, cpus_per_actor=cpus), callback=lambda row: seen.append(torch.get_num_threads()))
        assert seen == [threads] and torch.get_num_threads() == before


def test_unknown_executor():
    with pytest.raises(ValueError, match=r"executor: unknown name 'mpi'; allowed: local, ray"):
        run(FAST, executor="mpi")


# -- the real loaders, end to end on fake files ------------------------------------------------------------


def test_resnet20_on_cifar10_files(fake_cifar10):
    result = run(
        trial_dict(
            model="resnet20",
            dataset="cifar10",
            data_dir=fake_cifar10,
            algorithm="dana",
            num_workers=2,
            batch_size=25,
            epochs=1,
            lr=0.05,
            eval_batch_size=20,
        )
    )
    assert result["steps"] == 4 and result["num_params"] == 269_722 and not result["diverged"]


def test_wrn_on_cifar100_files(fake_cifar100):
    result = run(
        dict(
            model="wrn",
            model_options={"depth": 10, "width": 1},
            dataset="cifar100",
            data_dir=fake_cifar100,
            algorithm="multi-asgd",
            num_workers=2,
            batch_size=50,
            epochs=1,
        )
    )
    assert result["steps"] == 2 and not result["diverged"]


def test_digits_as_an_image_folder_learn_with_an_augmentation_that_fits_them(tmp_path):
    """Any ImageFolder tree is a data set: 8x8 digits as PNGs with no augmentation learn as the embedded
    digits do (ImageNet's random-resized crops, the only choice once, kept a small CNN near 50% error)."""
    from fakedata import make_digits_imagefolder

    root = make_digits_imagefolder(str(tmp_path / "digits"))
    result = run(
        dict(
            FAST,
            model_options={},
            dataset="imagefolder",
            data_dir=root,
            epochs=4,
            lr=0.1,
            dataset_options={"augmentation": "none", "image_size": 8, "mean": [0.3] * 3, "std": [0.4] * 3},
        )
    )
    assert result["test_error"] < 10


def test_arrays_trial(tmp_path):
    from fakedata import make_arrays_npz

    result = run(dict(FAST, dataset="arrays", data_dir=make_arrays_npz(str(tmp_path)), epochs=3, lr=0.1))
    assert result["test_error"] < 10


def test_imagefolder_trial(fake_imagenet):
    result = run(
        dict(
            model="cnn",
            dataset="imagenet",
            data_dir=fake_imagenet,
            dataset_options={"image_size": 16},
            algorithm="asgd",
            num_workers=2,
            batch_size=4,
            epochs=2,
        )
    )
    assert result["steps"] == 6 and not result["diverged"]


def test_prefetching_and_decode_threads_never_change_a_number(fake_imagenet):
    """Batches of a file-decoded data set made ahead on a thread, on 1 or 2 decode threads: one sha."""
    base = trial_dict(
        model="cnn",
        dataset="imagenet",
        data_dir=fake_imagenet,
        algorithm="dana",
        num_workers=3,
        batch_size=4,
        epochs=2,
        cpu_threads=1,
    )
    shas = {
        run(trial_dict(base, prefetch_batches=prefetch, dataset_options={"image_size": 16, "threads": threads}))[
            "params_sha256"
        ]
        for prefetch, threads in ((0, 1), (2, 2), (5, 1))
    }
    assert len(shas) == 1


# -- command line --------------------------------------------------------------------------------------------


def test_cli_compares_algorithms_and_workers(capsys):
    code = main(
        ["--algorithm", "baseline", "dana", "--num-workers", "1", "2", "--seed", "0", "1", "--epochs", "1", "--quiet"]
    )
    runs, summary = capsys.readouterr().out.split("\n\n")
    assert code == 0
    assert [line.split()[:3] for line in runs.splitlines()[1:]] == [
        ["baseline", "1", "0"],
        ["baseline", "1", "1"],
        ["dana", "1", "0"],
        ["dana", "1", "1"],
        ["dana", "2", "0"],
        ["dana", "2", "1"],
    ]
    errors = {tuple(line.split()[:3]): float(line.split()[3]) for line in runs.splitlines()[1:]}
    rows = [line.split() for line in summary.splitlines()[1:]]
    assert [row[:2] for row in rows] == [["baseline", "1"], ["dana", "1"], ["dana", "2"]]  # N, then registry order
    dana2 = [errors[("dana", "2", "0")], errors[("dana", "2", "1")]]
    assert float(rows[2][2]) == pytest.approx(sum(dana2) / 2, abs=0.01)
    assert float(rows[2][3]) == pytest.approx(abs(dana2[0] - dana2[1]) / 2**0.5, abs=0.01)
    assert rows[2][4:] == ["2", "0"]


def test_cli_epoch_lines_go_to_stderr_and_stdout_holds_the_tables_alone(capsys):
    """Off a terminal (``> results.txt``, a CI log) the per-epoch progress never lands inside the table."""
    assert main(["--seed", "0", "1", "--epochs", "2", "--max-steps-per-epoch", "5"]) == 0
    captured = capsys.readouterr()
    runs, summary = captured.out.split("\n\n")
    assert [line.split()[:3] for line in runs.splitlines()] == [
        ["algorithm", "N", "seed"],
        ["dana", "1", "0"],
        ["dana", "1", "1"],
    ]
    assert len(summary.splitlines()) == 2 and "epoch" not in captured.out
    assert [line.split()[:4] for line in captured.err.splitlines()] == [
        ["dana", "N=1", "seed=0", "epoch"],
        ["dana", "N=1", "seed=0", "epoch"],
        ["dana", "N=1", "seed=1", "epoch"],
        ["dana", "N=1", "seed=1", "epoch"],
    ]


def test_cli_shows_no_std_for_one_seed(capsys):
    assert (
        main(["--algorithm", "dana", "--num-workers", "2", "--epochs", "1", "--max-steps-per-epoch", "5", "--quiet"])
        == 0
    )
    summary = capsys.readouterr().out.split("\n\n")[1]
    assert summary.splitlines()[1].split()[3:] == ["-", "1", "0"]  # std, n, diverged


def test_help_lists_every_registered_name_without_markup(capsys):
    """``--help`` names what --algorithm, --model, --dataset, --schedule and --executor accept (a plug-in's
    names too, once --plugins loads it), and shows no reST markup from the docstrings it is made of."""
    from dana_ray.algorithms import ALGORITHMS
    from dana_ray.config import EXECUTORS
    from dana_ray.data import DATASETS
    from dana_ray.models import MODELS
    from dana_ray.schedules import SCHEDULES
    from dana_ray.sweep import main as sweep_main

    with pytest.raises(SystemExit) as done:
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert done.value.code == 0
    for names in (ALGORITHMS, MODELS, DATASETS, SCHEDULES, EXECUTORS):
        assert f"one of: {', '.join(names)}" in out
    assert "``" not in out and "::" not in out
    with pytest.raises(SystemExit):
        sweep_main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "one of: heterogeneous, quickstart, recent" in out and "``" not in out


def test_cli_has_a_flag_for_every_config_field_and_each_reaches_the_config(monkeypatch):
    """The flags are generated from TrialConfig's fields: none is missing (max_steps_per_epoch,
    prefetch_batches, max_actor_restarts, actor_start_timeout_s were), and each value given arrives."""
    import dataclasses

    import dana_ray.trial.cli as trial
    from dana_ray.config import SECTIONS, TrialConfig

    flags = {a.dest for a in trial._parser()._actions}
    options = {o for _, spec in SECTIONS.items() for o in spec.options}
    assert {f.name for f in dataclasses.fields(TrialConfig)} - {"sections"} | options <= flags
    seen = []
    monkeypatch.setattr(trial, "run", lambda cfg, *a, **k: seen.append(cfg) or run(cfg, *a, **k))
    assert (
        main(
            [
                "--max-steps-per-epoch",
                "3",
                "--prefetch-batches",
                "0",
                "--max-actor-restarts",
                "1",
                "--actor-start-timeout-s",
                "5",
                "--jobs-per-call",
                "4",
                "--no-fused-updates",
                "--epochs",
                "1",
                "--lr-decay-epochs",
                "--quiet",
            ]
        )
        == 0
    )
    cfg = seen[0]
    assert (
        cfg.max_steps_per_epoch,
        cfg.compute.prefetch_batches,
        cfg.option("max_actor_restarts"),
        cfg.option("actor_start_timeout_s"),
        cfg.option("jobs_per_call"),
        cfg.compute.fused_updates,
        cfg.lr_decay_epochs,
    ) == (3, 0, 1, 5.0, 4, False, ())
    assert trial._parser().parse_args(["--jobs-per-call", "auto"]).jobs_per_call == "auto"


def test_cli_bad_value_exits_2_with_one_line_on_stderr(capsys):
    assert main(["--algorithm", "adam"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error: algorithm: unknown name 'adam'")
    assert len(captured.err.splitlines()) == 1


@pytest.mark.parametrize(
    "argv,match",
    [
        (["--device", "cuda"], "device: 'cuda' asked for, but this process sees no CUDA device"),
        (["--dataset", "cifar10", "--data-dir", "/nonexistent"], "data_dir: cifar10 needs the directory"),
        (
            ["--schedule", "gamma", "--schedule-options", '{"shape": -1}'],
            "schedule_options.shape: expected a finite number > 0.0",
        ),
        (["--num-workers", "eight"], "argument --num-workers: invalid int value: 'eight'"),
        (["--schedule-options", "{not json"], "argument --schedule-options: not JSON"),
    ],
)
def test_cli_refuses_before_running_anything(argv, match, capsys):
    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert exit_code(argv + ["--epochs", "1"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1 and match in captured.err


def exit_code(argv: list[str]) -> int:
    """``main``'s exit code, whether it returns it or exits (argparse's errors exit)."""
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


def test_cli_prints_each_finished_run_at_once_and_a_later_failure_loses_nothing(capsys, monkeypatch):
    """The second run fails (here, its data vanishes after the checks): the first run's line is printed,
    the failure is one line on stderr, the summary still comes, exit code 1."""
    import dana_ray.trial.cli as trial

    real_run = trial.run

    def flaky(cfg, *args, **kwargs):
        if cfg.seed == 1:
            raise ValueError("data_dir: gone")
        return real_run(cfg, *args, **kwargs)

    monkeypatch.setattr(trial, "run", flaky)
    assert main(["--seed", "0", "1", "2", "--epochs", "1", "--quiet"]) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert [line.split()[:3] for line in lines[1:3]] == [["dana", "1", "0"], ["dana", "1", "2"]]
    assert captured.err == "error: dana N=1 seed=1: data_dir: gone\n"
    summary = [line.split() for line in captured.out.split("\n\n")[1].splitlines()[1:]]
    assert [row[:2] + row[-2:] for row in summary] == [["dana", "1", "2", "0"]]  # the two finished runs


def test_ringmaster_reports_the_gradients_it_discarded():
    """Every gradient R = 4 or more updates old is discarded: the count in each row and in the result is the
    delay histogram's tail (the histogram counts every gradient that arrived)."""
    rows: list = []
    result = run(
        dict(FAST, algorithm="ringmaster", num_workers=8, schedule="gamma", algorithm_options={"max_delay": 4}),
        callback=rows.append,
    )
    tails = [sum(sum(r["delay_histogram"][4:]) for r in rows[: k + 1]) for k in range(len(rows))]
    assert [r["discarded_gradients"] for r in rows] == tails and tails[-1] > 0
    assert result["discarded_gradients"] == tails[-1] and not result["diverged"]


@pytest.mark.parametrize(
    "change, hint",
    [
        (dict(epoch=3), "config: unknown key 'epoch'; allowed: "),
        (dict(algorithm="dnaa"), "algorithm: unknown name 'dnaa'; allowed: "),
        (dict(schedule="gama"), "schedule: unknown name 'gama'; allowed: "),
    ],
)
def test_a_mistyped_name_or_key_gets_a_did_you_mean(change, hint):
    with pytest.raises(ValueError) as refused:
        TrialConfig.from_dict(dict(FAST, **change))
    message = str(refused.value)
    assert message.startswith(hint) and "\n" not in message
    assert message.endswith({"epoch": "'epochs'?", "algorithm": "'dana'?", "schedule": "'gamma'?"}[next(iter(change))])


def test_a_name_far_from_every_allowed_one_gets_no_guess():
    with pytest.raises(ValueError) as refused:
        TrialConfig.from_dict(dict(FAST, algorithm="xyzzy"))
    assert "did you mean" not in str(refused.value)
