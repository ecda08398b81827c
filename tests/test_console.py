"""The sweep's console: one line per finished trial off a terminal, a redrawn status block on one."""

from __future__ import annotations

import io
from types import SimpleNamespace

from dana_ray.sweep.console import SweepConsole


class FakeTrial(SimpleNamespace):
    def __str__(self) -> str:  # a Tune trial's str() is its name
        return f"trial-{self.trial_id}"


def trial(trial_id, cell, seed, status="RUNNING", result=None):
    return FakeTrial(
        trial_id=trial_id,
        config={"cell": cell, "schedule": "round-robin", "seed": seed},
        status=status,
        last_result=result or {},
        path=f"/exp/{trial_id}",
    )


def test_off_a_terminal_one_line_per_finished_or_failed_trial_and_nothing_else():
    out = io.StringIO()
    console = SweepConsole(total=3, stream=out)
    console.setup()
    a, b, c = trial("a", "dana N=16", 0), trial("b", "asgd N=16", 0), trial("c", "baseline N=1", 1, "PENDING")
    trials = [a, b, c]
    console.on_step_end(0, trials)  # no line for progress alone
    console.on_trial_complete(1, trials, a)  # a trial that reported nothing
    b.last_result = {"test_error": 90.0, "epoch": 3, "diverged": True, "time_total_s": 4}
    console.on_trial_complete(3, trials, b)
    console.on_trial_error(4, trials, c)
    assert out.getvalue().splitlines() == [
        "[1/3] dana N=16, round-robin, seed 0: done (0 epochs, 0.0 s)",
        "[2/3] asgd N=16, round-robin, seed 0: diverged (3 epochs, 4.0 s)",
        "[3/3] baseline N=1, round-robin, seed 1: FAILED (see /exp/c/error.txt)",
    ]
    assert "\x1b[" not in out.getvalue()


def test_a_finished_trial_names_its_error_epochs_and_time():
    out = io.StringIO()
    console = SweepConsole(total=2, stream=out)
    console.setup()
    a = trial("a", "dana N=16", 2, result={"test_error": 3.7037, "epoch": 20, "time_total_s": 75.2})
    console.on_trial_complete(1, [a, trial("b", "dana N=16", 1, "PENDING")], a)
    assert out.getvalue() == "[1/2] dana N=16, round-robin, seed 2: test error 3.70% (20 epochs, 1 min 15 s)\n"


def test_on_a_terminal_one_status_block_is_redrawn_in_place():
    out = io.StringIO()
    console = SweepConsole(total=4, stream=out, live=True)
    console.setup()
    a, b = trial("a", "dana N=4", 0), trial("b", "dana N=4", 1)
    trials = [a, b, trial("c", "dana N=8", 0, "PENDING"), trial("d", "dana N=8", 1, "PENDING")]
    console.on_step_end(0, trials)
    first = out.getvalue()
    assert first.startswith("0 of 4 trials done, 2 running, 2 pending, 0 errored; 0 s elapsed\n")
    a.last_result = {"test_error": 2.0, "epoch": 1, "time_total_s": 1}
    console.on_trial_complete(1, trials, a)
    block = out.getvalue()[len(first) :]
    assert block.startswith("\x1b[1F\x1b[J1 of 4 trials done, 1 running, 2 pending, 0 errored; ")
    assert "left" in block.splitlines()[0]  # an ETA once a trial has finished
    assert block.endswith("  last: dana N=4, round-robin, seed 0: test error 2.00% (1 epochs, 1.0 s)\n")


def test_a_failed_trial_is_told_with_its_cause_in_one_line_and_tunes_traceback_is_dropped():
    """Tune logs a failed trial's traceback ("Trial task failed for trial NAME", the exception attached); the
    sweep keeps the exception's last line for the console and drops the record (``--verbose`` keeps it). A
    retried failure is a ``[retry]`` line; a final one names its cause, even where error.txt stayed empty
    (a full disk)."""
    import logging

    from dana_ray.sweep.tune_log import quiet_tune

    shown = []
    handler = logging.Handler()
    handler.emit = shown.append
    logger = logging.getLogger("ray.tune.execution.tune_controller")
    logger.addHandler(handler)
    try:
        quiet_tune(verbose=False)
        try:
            raise OSError(28, "No space left on device")
        except OSError as error:
            logger.error("Trial task failed for trial trial-fc", exc_info=error)
        quiet_tune(verbose=True)
        try:
            raise RuntimeError("shards died")
        except RuntimeError as error:
            logger.error("Trial task failed for trial trial-fd", exc_info=error)
    finally:
        logger.removeHandler(handler)
        quiet_tune(verbose=True)
    assert [r.getMessage() for r in shown] == ["Trial task failed for trial trial-fd"]

    out = io.StringIO()
    console = SweepConsole(total=3, stream=out)
    console.setup()
    c, d, e = trial("fc", "dana N=4", 0), trial("fd", "dana N=4", 1), trial("fe", "dana N=4", 2)
    console.on_trial_recover(1, [c, d, e], d)
    console.on_trial_error(2, [c, d, e], c)
    console.on_trial_error(3, [c, d, e], e)  # no cause logged
    assert out.getvalue().splitlines() == [
        "[retry] dana N=4, round-robin, seed 1: failed (shards died); Tune restarts it from its last checkpoint",
        "[1/3] dana N=4, round-robin, seed 0: FAILED: [Errno 28] No space left on device (more in /exp/fc/error.txt)",
        "[2/3] dana N=4, round-robin, seed 2: FAILED (see /exp/fe/error.txt)",
    ]


def test_rays_error_messages_to_the_driver_go_to_stderr(capsys):
    """The GCS's error messages ("A worker died or was killed ...") reach a driver through
    ``ray._private.worker.print_to_stdstream`` as its raylet's output, on stdout; the sweep sends them to
    stderr, and leaves every other output where Ray puts it."""
    from ray._private import worker

    from dana_ray.sweep.tune_log import ray_errors_to_stderr

    original = worker.print_to_stdstream
    try:
        ray_errors_to_stderr()
        ray_errors_to_stderr()  # once is enough; twice changes nothing
        worker.print_to_stdstream({"lines": ["A worker died or was killed"], "pid": "raylet", "is_err": False}, True)
        worker.print_to_stdstream({"lines": ["an actor's print"], "pid": 42, "is_err": False}, True)
    finally:
        worker.print_to_stdstream = original
    captured = capsys.readouterr()
    assert "A worker died or was killed" in captured.err and "A worker died" not in captured.out
    assert "an actor's print" in captured.out


def test_the_dashboard_line_says_where_and_how_to_get_in(monkeypatch):
    from dana_ray.cluster.session import AUTH_MODE_ENV, TOKEN_FILE, dashboard_line

    monkeypatch.setenv(AUTH_MODE_ENV, "token")  # what ray.init sets in its process when it turns tokens on
    line = dashboard_line("127.0.0.1:8266")
    assert line.startswith("Ray dashboard: http://127.0.0.1:8266 (it asks for Ray's token: `ray get-auth-token`")
    assert TOKEN_FILE in line and f"{AUTH_MODE_ENV}=disabled" in line
    monkeypatch.setenv(AUTH_MODE_ENV, "disabled")
    assert dashboard_line("127.0.0.1:8265") == "Ray dashboard: http://127.0.0.1:8265"
    assert dashboard_line(None) is None  # Ray started without its dashboard


def test_rays_token_warning_is_dropped_only_while_ray_starts():
    """Ray logs its warning each time ``ray.init`` starts an instance; the dashboard line replaces it."""
    import logging

    from dana_ray.cluster.session import token_warning_replaced

    class Kept(logging.Handler):  # on the logger itself: Ray's "ray" logger does not propagate to the root
        records: list = []

        def emit(self, record):
            self.records.append(record)

    log, kept = logging.getLogger("ray._private.authentication.authentication_token_setup"), Kept()
    warning = "Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled to opt out."
    log.addHandler(kept)
    try:
        with token_warning_replaced():
            log.warning(warning)
            log.warning("Token authentication is disabled for this Ray cluster.")  # any other is kept
        log.warning(warning)
    finally:
        log.removeHandler(kept)
    assert [r.getMessage()[:40] for r in kept.records] == [
        "Token authentication is disabled for thi",
        "Token authentication is enabled for this",
    ]


def test_the_eta_is_the_trial_time_left_over_the_trials_running_at_once():
    """Trials of 10 s, two at a time: with one done, one running for 6 s and two pending, 4 + 2 x 10 = 24 s of
    trial time are left, 12 s with two at once; the last trial running for 6 s has 4 s left, not the
    elapsed time over the trials done (which counts Ray's start and the trials side by side as in a row)."""
    console = SweepConsole(total=4, stream=io.StringIO())
    console.setup()
    a, b = trial("a", "dana N=4", 0), trial("b", "dana N=4", 1, result={"time_total_s": 6.0})
    c, d = trial("c", "dana N=8", 0, "PENDING"), trial("d", "dana N=8", 1, "PENDING")
    assert console.eta_seconds([a, b, c, d]) is None  # nothing finished yet: no ETA shown
    a.last_result = {"time_total_s": 10.0}
    console.on_trial_complete(1, [a, b, c, d], a)
    assert console.eta_seconds([a, b, c, d]) == 24.0  # one running: the pending wait for it
    c.status = "RUNNING"
    assert console.eta_seconds([a, b, c, d]) == (4.0 + 10.0 + 10.0) / 2
    for t, seconds in ((b, 10.0), (c, 10.0)):
        t.last_result = {"time_total_s": seconds}
        console.on_trial_complete(2, [a, b, c, d], t)
    d.status, d.last_result = "RUNNING", {"time_total_s": 6.0}
    assert console.eta_seconds([a, b, c, d]) == 4.0
    assert console.status_line([a, b, c, d]).endswith("; about 4 s left")
