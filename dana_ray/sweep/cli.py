"""Run a grid of trials with Ray Tune: ``python -m dana_ray.sweep [CONFIG] [options]``.

CONFIG is a grid file or a name in ``tune_configs/`` (``table3``, ...); without one it runs ``quickstart``
(the embedded digits, every asynchronous rule and the baseline, 1/4/8/16 workers, 3 seeds). Every trial is
validated before anything starts, a data set with no files is built and checked here, the experiment
folder is claimed (one sweep per experiment), and every live node of the cluster is checked for the data
the trials read (exit code 2, naming the file, field, node and path). With a Ray cluster running (``ray
up``, ``ray job submit``), the sweep joins it; otherwise it starts Ray on this machine and sizes the trials'
unset reservations to it.

Each trial is a Tune trial on the Ray executor (a placement group reserves its own process, its
ParameterServer and its Worker actors together) or, with ``tune.executor: local``, a simulation in its own
process. A trial checkpoints when due; a failed one resumes from its checkpoint (``tune.max_failures``), and
``--resume`` continues an interrupted experiment without redoing finished trials. At the end the report is
printed and written into the experiment folder, and the exit code says whether every trial finished (0),
some did not (1) or the sweep was interrupted (130).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pickle
import shlex
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import yaml

from dana_ray.config import EXECUTORS, TrialConfig, get_option, set_options
from dana_ray.core.cli import EXIT_FAILED, EXIT_INTERRUPTED, OneLineParser, bad_input, one_line, plain, show_notes
from dana_ray.experiments.fits import check_fits, generated_shapes, key_of
from dana_ray.experiments.folder import GRID_FILE
from dana_ray.experiments.grid import Grid, GridError, check_executor, grid_names, load_grid
from dana_ray.sweep import signals
from dana_ray.sweep.lock import LockError, claim
from dana_ray.sweep.tuner import latest_experiment, make_tuner, tune_trainable

DEFAULT_STORAGE = os.path.expanduser("~/ray_results")


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m dana_ray.sweep", description=plain(__doc__.split("\n\n")[0]))
    p.add_argument(
        "config",
        nargs="?",
        default=None,
        help=f"a grid file, or one of: {', '.join(grid_names())} (default: quickstart; with --resume: the grid "
        "the experiment ran)",
    )
    p.add_argument("--resume", action="store_true", help="continue an interrupted experiment (--name, or the latest)")
    p.add_argument("--smoke-test", action="store_true", help="one epoch and the first seed of every cell")
    p.add_argument(
        "--storage", default=DEFAULT_STORAGE, help="where experiments are written (shared path or URI on a cluster)"
    )
    p.add_argument("--name", help="experiment name (default: <grid>-<date>-<time>)")
    p.add_argument("--data-dir", help="overrides the grid's trial.data_dir")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        type=_key_value,
        help="set a trial key over the grid's (a YAML value), e.g. --set gpus_per_actor=0; repeatable",
    )
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="AXIS=V1,V2",
        type=_key_value,
        help="run only these values of an axis, e.g. --only num_workers=4,8; repeatable",
    )
    p.add_argument(
        "--executor",
        help=f"how each trial runs (overrides tune.executor): one of "
        f"{', '.join(f'{n} ({EXECUTORS[n].help})' for n in EXECUTORS)}",
    )
    p.add_argument(
        "--skip-data-check",
        action="store_true",
        help="do not check that every live node can read the data before starting",
    )
    p.add_argument(
        "--no-report",
        action="store_true",
        help="do not print the report at the end nor write it into EXPERIMENT/report "
        "(python -m dana_ray.report EXPERIMENT makes it later)",
    )
    p.add_argument(
        "--verbose",
        action="store_true",
        help="Tune's full console output (each trial's config and results), and every actor's "
        "output streamed too (by default: one status block, or a line per finished trial when "
        "not on a terminal; actors' output stays in Ray's logs, shown per actor by the dashboard)",
    )
    return p


def _key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as YAML (``0.5``, ``[2, 4]``, ``{image_size: 64}``, ``cpu``)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(f"{key}: {value!r} is not a YAML value") from None


def _grid_options(args: argparse.Namespace) -> dict[str, Any]:
    """What the command line changes in the grid: ``load_grid``'s keyword arguments."""
    only = {}
    for axis, given in args.only:  # "4,8" reads as one string; "4" as a number; "[4, 8]" as a list
        values = [yaml.safe_load(v) for v in given.split(",")] if isinstance(given, str) else given
        only[axis] = values if isinstance(values, list) else [values]
    return {"data_dir": args.data_dir, "smoke_test": args.smoke_test, "overrides": dict(args.set), "only": only}


def check_storage(storage: str) -> None:
    """Refuse a local ``--storage`` this process cannot write to (a URI is the cloud's business)."""
    if "://" in storage:
        return
    existing = storage
    while not os.path.exists(existing):  # the folder is made later, by the sweep
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise GridError(f"--storage: cannot write to {storage!r} ({existing!r}: not a folder)")
    try:  # a real write, not os.access: root passes access() on read-only file systems and /proc
        os.rmdir(tempfile.mkdtemp(prefix=".dana_ray-write-check-", dir=existing))
    except OSError as error:
        raise GridError(f"--storage: cannot write to {storage!r} ({existing!r}: {error.strerror})") from None


def _resumed_grid(args: argparse.Namespace, storage: str) -> tuple[Grid, str, dict[str, Any]]:
    """The grid an experiment ran with what this ``--resume`` changes, its folder, and the changes (by name,
    ``sweep/resume.py``); refuses a different grid than it ran and any flag it cannot apply, in one line."""
    from dana_ray.sweep import resume  # imports Ray, as a resume does anyway

    resume.refuse_selections(args)
    changes = resume.changes_asked(args)
    name = args.name or (load_grid(args.config).name if args.config else "quickstart")
    path = os.path.join(storage, args.name) if args.name else latest_experiment(storage, name)
    from ray import tune

    if path is None or not os.path.isfile(os.path.join(path, GRID_FILE)) or not tune.Tuner.can_restore(path):
        raise GridError(
            f"--resume: no experiment {'named ' + repr(args.name) if args.name else 'of ' + repr(name)} "
            f"to resume under {storage}"
        )
    _check_restorable(path)
    ran = load_grid(os.path.join(path, GRID_FILE))
    if args.config:  # an edited grid file: what it trains as it ran; where and how it runs may change
        asked = load_grid(args.config)
        change = asked.changes_from(ran)
        if change:
            raise GridError(
                f"--resume: the grid differs from the one {path} ran ({change}); resume it with its own "
                f"grid (omit CONFIG), or start a new experiment with another --name"
            )
        theirs = ran.resumable_values()
        edited = {k: v for k, v in asked.resumable_values().items() if v != theirs[k]}
        changes = {**edited, **changes}  # the flags over the file
    grid = resume.resumed(ran, changes)
    if "data_dir" in changes:
        changes["data_dir"] = grid.trial["data_dir"]  # made absolute, as the grid has it
    return grid, path, changes


#: The file in which Tune saves an experiment's run (its callbacks, by the names of their classes).
TUNER_STATE = "tuner.pkl"


def _check_restorable(path: str) -> None:
    """Refuse, in one line, an experiment whose saved run names classes this dana_ray does not have (one written
    by a version whose modules have moved): Tune could not restore it."""
    try:
        with open(os.path.join(path, TUNER_STATE), "rb") as f:
            pickle.load(f)
    except (ImportError, AttributeError) as error:
        raise GridError(
            f"--resume: {path} was written by another version of dana_ray, whose saved run this one cannot read "
            f"({one_line(error)}); its finished trials are in python -m dana_ray.report {shlex.quote(path)}, and "
            f"the rest can run as a new experiment (another --name)"
        ) from None


def main(argv: list[str] | None = None) -> int:
    """Exit codes (``core/cli.py``): 0 when every trial of the grid finished; 1 when some failed or never
    ran (counted from the experiment folder against the grid, not from Tune's error list); 2 for bad input
    (grid, options, storage, data on a node, an experiment another sweep holds), refused in one line before
    anything launches; 130 when interrupted (SIGINT, SIGTERM, at any moment: ``signals``). Each non-zero
    end after launch prints the line that continues the experiment."""
    with show_notes(), signals.handled():
        try:
            return _main(argv)
        except KeyboardInterrupt:  # before the experiment was claimed: nothing to continue
            print(f"interrupted ({signals.received() or 'SIGINT'}) before the sweep started", file=sys.stderr)
            return EXIT_INTERRUPTED


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    storage = args.storage if "://" in args.storage else os.path.abspath(os.path.expanduser(args.storage))
    lock = None
    try:
        changes: dict[str, Any] = {}
        if args.resume:
            grid, path, changes = _resumed_grid(args, storage)
        else:
            grid = load_grid(args.config or "quickstart", **_grid_options(args))
            if args.executor:
                try:
                    check_executor(
                        args.executor,
                        grid.axes["schedule"],
                        get_option(grid.trial, "server_shards"),
                        field="--executor",
                    )
                except ValueError as error:
                    raise GridError(str(error)) from None
                grid.tune["executor"] = args.executor
            path = os.path.join(storage, args.name or f"{grid.name}-{time.strftime('%Y%m%d-%H%M%S')}")
        check_storage(storage)
        configs = grid.checked  # load_grid checked each trial once
        if not args.skip_data_check:  # data sets with no files: built here and fitted, before Ray starts
            try:
                check_fits(configs, generated_shapes(configs))
            except ValueError as error:
                raise GridError(f"{grid.path}: {error}") from None
        if "://" not in path:
            lock = claim(path)  # before Ray starts: of two sweeps on one name, one goes on
        if not args.resume and os.path.exists(os.path.join(path, GRID_FILE)):
            raise GridError(f"--name: {path} holds an experiment already; --resume it, or choose another --name")
    except (GridError, LockError) as error:
        if lock is not None:
            lock.release()
        return bad_input(error)
    signals.tell_supervisor(lock.file if lock else None, _interrupted_lines(grid, storage, path, "{signal}", False))
    try:
        return _sweep(args, grid, configs, storage, path, changes)
    except KeyboardInterrupt:  # a stop signal outside Tune's run (starting Ray, checking nodes, restoring)
        return _interrupted(grid, storage, path, signals.received() or "SIGINT")
    finally:
        if lock is not None:
            lock.release()


@contextlib.contextmanager
def _without_rays_sigterm_handler() -> Iterator[None]:
    """``ray.init`` puts in a SIGTERM handler of its own that calls ``sys.exit``; a SIGTERM that lands in one of
    the fork handlers Ray's process starts run would lose that exit, and the driver would go on. Inside, Ray
    leaves the sweep's handlers in place (``signals.deferred`` records the signal and raises it after)."""
    from ray._private import utils

    installs = utils.set_sigterm_handler
    utils.set_sigterm_handler = lambda handler: None
    try:
        yield
    finally:
        utils.set_sigterm_handler = installs


def _sweep(
    args: argparse.Namespace, grid: Grid, configs: list[TrialConfig], storage: str, path: str, changes: dict[str, Any]
) -> int:
    import ray
    from ray import tune

    from dana_ray.cluster.session import init_ray
    from dana_ray.sweep import resume, tune_log

    if not args.verbose:  # Tune's warning about frequent state snapshots, once per checkpoint of a quick trial
        os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's classic reporter: silent at verbose=0
    if not ray.is_initialized():  # joins RAY_ADDRESS or a cluster on this machine; else starts Ray here
        with signals.deferred(), _without_rays_sigterm_handler():
            dashboard = init_ray(log_to_driver=args.verbose)  # quiet: actors' output stays in Ray's logs
        if dashboard:
            print(dashboard)  # where to watch the trials, and how to get in
    tune_log.quiet_tune(args.verbose)
    tune_log.ray_errors_to_stderr()
    if not args.skip_data_check:  # data sets with files: checked on every node, then fitted
        from dana_ray.cluster.preflight import check_nodes

        problems, shapes = check_nodes({key_of(c) for c in configs})
        if not problems:
            try:
                check_fits(configs, shapes)
            except ValueError as error:
                problems = [str(error)]
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            return bad_input(f"{grid.path}: {problems[0]}{more}")
    from dana_ray.cluster import resources

    cluster, can_grow = resources.read_cluster()
    counts, executor = sorted({n for _, n in grid.cells()}), grid.tune["executor"]
    if can_grow:
        waiting = resources.waiting_line(grid.trial, counts, executor, grid.tune["trial_cpus"], cluster)
        if waiting:
            print(waiting)
    else:
        try:
            chosen = resources.size_to_cluster(grid.trial, counts, executor, grid.tune["trial_cpus"], cluster)
        except ValueError as error:
            return bad_input(f"{grid.path}: {error}")
        if chosen:
            set_options(grid.trial, chosen)
            print(resources.sized_line(chosen, cluster))
            changes = {**chosen, **changes}  # a resumed run's trials sized to this cluster, as new ones are
    if args.resume:
        if changes:  # what the trials run with from now on; the grid file says so too
            grid.to_file(os.path.join(path, GRID_FILE))
        print(f"resuming {path}" + "".join(f"; {k}: {v}" for k, v in changes.items()))
        tuner = tune.Tuner.restore(path, tune_trainable(changes), resume_errored=True)  # with the run's StopWatch
    else:
        print(f"{grid.description}: {len(grid.trials())} trials -> {path}")
        tuner = make_tuner(grid, storage, os.path.basename(path), verbose=args.verbose)
    started = time.perf_counter()
    results = None
    try:
        with resume.in_force(changes if args.resume else {}):
            results = tuner.fit()
    except KeyboardInterrupt:  # a second Ctrl+C while Tune was saving its state
        signals.note("SIGINT")
    finally:
        signals.reinstall()
    stopped_by = signals.received()
    if stopped_by is not None:
        return _interrupted(grid, storage, path, stopped_by)
    print(f"\n{len(grid.trials())} trials in {time.perf_counter() - started:.0f} s; results in {path}")
    if "://" in path:  # the folder is not readable here: the outcome from what Tune returned
        return _outcome(grid, storage, path, _finished_in(results, grid))
    trials = None
    try:
        from dana_ray.report import Report, load_experiment

        trials = load_experiment(path)
        if not args.no_report:
            report = Report(trials)
            print(report.render("text"))
            written = report.write(os.path.join(path, "report"))
            print(
                f"report written into {os.path.join(path, 'report')}: "
                + ", ".join(os.path.basename(f) for f in written)
            )
    except Exception as error:
        print(f"error: the report of {path} could not be made: {one_line(error)}", file=sys.stderr)
    return _outcome(grid, storage, path, trials)


def _finished_in(results: Any, grid: Grid) -> Any:
    """The outcome frame (``finished``, ``broken``) from Tune's results, for storage this process cannot list
    (an ``s3://`` URI): a trial finished when it reported its last epoch, or diverged, without an error."""
    import pandas as pd

    from dana_ray.report import is_finished

    if results is None:
        return None
    epochs = grid.trial.get("epochs", TrialConfig().epochs)
    finished = [r.error is None and is_finished(r.metrics, epochs) for r in results]
    return pd.DataFrame({"finished": finished, "broken": [""] * len(finished)})


def resume_command(storage: str, path: str) -> str:
    """The command line that continues the experiment at ``path``."""
    where = "" if storage == os.path.abspath(DEFAULT_STORAGE) else f" --storage {shlex.quote(storage)}"
    return f"python -m dana_ray.sweep --resume --name {shlex.quote(os.path.basename(path))}{where}"


def _outcome(grid: Grid, storage: str, path: str, trials: Any) -> int:
    """The exit code, from the trials the experiment folder shows finished (``trials``: the report's frame,
    None if the folder could not be read), with one line on stderr for anything short of every trial."""
    planned = len(grid.trials())
    finished = int(trials["finished"].sum()) if trials is not None else 0
    broken = int(trials["broken"].astype(bool).sum()) if trials is not None else 0
    if finished < planned:
        unreadable = f", {broken} with files that cannot be read" if broken else ""
        print(
            f"error: {planned - finished} of {planned} trials did not finish{unreadable}; see {path}; "
            f"retry them with: {resume_command(storage, path)}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return 0


def _interrupted(grid: Grid, storage: str, path: str, signal_name: str) -> int:
    """Exit code 130, with ``_interrupted_lines`` on stderr. No report: ``--resume`` writes it once the
    experiment is complete, ``python -m dana_ray.report`` any time."""
    for line in _interrupted_lines(grid, storage, path, signal_name):
        print(line, file=sys.stderr)
    return EXIT_INTERRUPTED


def _interrupted_lines(grid: Grid, storage: str, path: str, signal_name: str, counted: bool = True) -> list[str]:
    """Where an interrupted experiment stands, counted from its folder (Tune saved its state on the signal;
    not ``counted``: the lines said for the driver by its supervisor, which cannot count), and the command
    that continues it."""
    planned, counts = len(grid.trials()), ""
    if counted and "://" not in path:
        try:
            from dana_ray.report import load_experiment

            trials = load_experiment(path)
            finished = int(trials["finished"].sum())
            started = int(((trials["epochs_done"] > 0) & ~trials["finished"]).sum())
            counts = (
                f"{finished} of {planned} trials finished, {started} stopped mid-way, "
                f"{planned - finished - started} not started; "
            )
        except (OSError, ValueError):  # nothing written yet
            counts = f"0 of {planned} trials finished; "
    return [
        f"interrupted ({signal_name}): {counts}results in {path}",
        f"continue with: {resume_command(storage, path)}",
    ]


if __name__ == "__main__":
    raise SystemExit(main())
