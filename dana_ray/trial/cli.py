"""``python -m dana_ray.trial``: a single trial, or a small comparison on a laptop::

python -m dana_ray.trial                                   # DANA, 1 worker, embedded digits
python -m dana_ray.trial --algorithm asgd dana --num-workers 1 4 16
python -m dana_ray.trial --executor ray --num-workers 8 --num-actors 2 [--server-shards 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from collections.abc import Callable
from typing import Any

import yaml
from tqdm import tqdm

from dana_ray.config import SECTIONS, TrialConfig, section_of, set_options
from dana_ray.config.executors import EXECUTORS, check_supports
from dana_ray.core.cli import HelpFormatter, OneLineParser, bad_input, one_line, plain, show_notes
from dana_ray.core.plugins import load_plugins
from dana_ray.data import check_dataset
from dana_ray.engine.build import resolve_device
from dana_ray.experiments.fits import check_fits, generated_shapes, key_of
from dana_ray.experiments.grid import Grid
from dana_ray.trial.run import run

#: The fields a command line gives several values of: every combination runs, one after another.
SWEPT = ("algorithm", "num_workers", "seed")


def _parser() -> argparse.ArgumentParser:
    """One flag per ``TrialConfig`` field, generated from the field's type, default and help (``--lr``,
    ``--max-steps-per-epoch``, ...; the axes take several values), and one per option of every config section
    (``--device``, ``--num-actors``, ...: the section's declared options, a plug-in executor's included)."""
    p = OneLineParser(prog="python -m dana_ray.trial", description=plain(__doc__), formatter_class=HelpFormatter)
    defaults, hints = TrialConfig(), typing.get_type_hints(TrialConfig)
    names = registered_names()
    for f in dataclasses.fields(TrialConfig):
        if f.name == "sections":
            continue
        flag, default, help = "--" + f.name.replace("_", "-"), getattr(defaults, f.name), f.metadata["help"]
        if f.name in names:  # the registered names, a plug-in's included (its module is loaded first)
            help = f"one of: {', '.join(names[f.name])}"
        kinds = [k for k in (typing.get_args(hints[f.name]) or (hints[f.name],)) if k is not type(None)]
        if f.name in SWEPT:
            p.add_argument(flag, nargs="+", type=kinds[0], default=[default], help=f"{help} (one or more)")
        elif kinds == [bool]:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help)
        elif kinds == [dict]:
            p.add_argument(flag, type=_json_mapping, default={}, metavar="JSON", help=f"{help} (a JSON mapping)")
        elif kinds == [tuple]:
            p.add_argument(flag, nargs="*", type=f.metadata.get("item", str), default=list(default), help=help)
        else:
            p.add_argument(flag, type=_scalar(kinds), default=default, help=help)
    for section, spec in SECTIONS.items():  # given only where given: a section's defaults are its own
        for name, option in spec.options.items():
            flag = "--" + name.replace("_", "-")
            help = f"{section}.{name}: {option.help} (default: {option.default})"
            if isinstance(option.default, bool):
                p.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help)
            else:  # a YAML value, checked by the option's own check
                p.add_argument(flag, type=yaml.safe_load, default=argparse.SUPPRESS, help=help)
    p.add_argument("--executor", default="local", help=f"one of: {', '.join(EXECUTORS)}")
    p.add_argument("--json", action="store_true", help="print each result as one JSON line")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    return p


def registered_names() -> dict[str, list[str]]:
    """The names each named field of a trial accepts now: the registries', with the plug-ins loaded so far."""
    from dana_ray.algorithms import ALGORITHMS
    from dana_ray.data import DATASETS
    from dana_ray.models import MODELS
    from dana_ray.schedules import SCHEDULES

    return {
        "algorithm": list(ALGORITHMS),
        "model": list(MODELS),
        "dataset": list(DATASETS),
        "schedule": [*SCHEDULES, "arrival (Ray executor only)"],
    }


def _scalar(kinds: list[type]) -> Callable[[str], Any]:
    """A flag's parser for a field of these types (``int | str``: a number where the text is one)."""
    if len(kinds) == 1:
        return kinds[0]

    def parse(text: str) -> Any:
        for kind in kinds:
            try:
                return kind(text)
            except ValueError:
                continue
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(k.__name__ for k in kinds)}, got {text!r}")

    return parse


def _given_plugins(argv: list[str] | None) -> list[str]:
    """The ``--plugins`` of a command line, read before the parser is built."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--plugins", nargs="*", default=[])
    return p.parse_known_args(argv)[0].plugins


def _json_mapping(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not JSON ({error})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON mapping, got {text!r}")
    return value


#: The width of the tables' rule column: the longest built-in name, ``delay-adaptive``.
RULE_WIDTH = 14
RUN_HEADER = (
    f"{'algorithm':<{RULE_WIDTH}} {'N':>3} {'seed':>4} {'test error %':>12} {'diverged':>8} {'mean delay':>10}"
    "  params_sha256"
)


def format_run(result: dict) -> str:
    """One finished run as one line of the results table (under ``RUN_HEADER``)."""
    c = result["config"]
    return (
        f"{c['algorithm']:<{RULE_WIDTH}} {c['num_workers']:>3} {c['seed']:>4} {result['test_error']:>12.2f} "
        f"{result['diverged']!s:>8} {result['mean_delay']:>10.2f}  {result['params_sha256'][:16]}"
    )


def format_summary(results: list[dict]) -> str:
    """Test error mean ± std over seeds per (algorithm, N): the report's ``summarize``, as text."""
    from dana_ray.report import results_frame, summarize

    lines = [f"{'algorithm':<{RULE_WIDTH}} {'N':>3} {'mean %':>8} {'std':>6} {'n':>3} {'diverged':>8}"]
    for _, row in summarize(results_frame(results)).iterrows():
        std = "-" if row["std"] != row["std"] else f"{row['std']:.2f}"  # one seed: no spread to show
        lines.append(
            f"{row['algorithm']:<{RULE_WIDTH}} {row['num_workers']:>3} {row['mean']:>8.2f} {std:>6} {row['n']:>3} "
            f"{row['diverged']:>8}"
        )
    return "\n".join(lines)


def _fixed(args: argparse.Namespace) -> dict[str, Any]:
    """The command line's config keys that every run shares (all but the axes and the CLI's own flags), the
    sections' options given by name (``--num-actors``) in their sections."""
    given = {k: v for k, v in vars(args).items() if k not in (*SWEPT, "json", "quiet", "executor")}
    fixed = {k: v for k, v in given.items() if section_of(k) is None}
    set_options(fixed, {k: v for k, v in given.items() if section_of(k) is not None})
    return fixed


def _checked_configs(args: argparse.Namespace) -> list[TrialConfig]:
    """Every run's config, checked before the first starts: values, and for the local executor the device
    and the data on this machine. The runs are a grid's cells (a single-worker rule once, with N = 1)."""
    load_plugins(args.plugins)
    fixed = _fixed(args)
    cells = Grid(
        "command line",
        "",
        "",
        None,
        fixed,
        {"algorithm": args.algorithm, "num_workers": args.num_workers, "schedule": [args.schedule], "seed": args.seed},
    ).cells()
    configs = [
        TrialConfig.from_dict(dict(fixed, algorithm=a, num_workers=n, seed=s)) for a, n in cells for s in args.seed
    ]
    spec = EXECUTORS[args.executor]
    for cfg in configs:
        check_supports(args.executor, [cfg.schedule], cfg.option("server_shards"))
    shapes = generated_shapes(configs)
    if spec.in_trial_process:  # the data is read here: its files are checked and fitted here too
        for cfg in configs:
            resolve_device(cfg.compute.device, cfg.compute.gpus_per_actor)
        for key, cfg in {key_of(c): c for c in configs}.items():
            shape = check_dataset(cfg.dataset, cfg.data_dir, **cfg.dataset_options)
            if shape is not None:
                shapes[key] = shape
    check_fits(configs, shapes)
    return configs


def _sized_to_ray(args: argparse.Namespace, configs: list[TrialConfig]) -> tuple[list[TrialConfig], str | None]:
    """Runs on the Ray executor reserve their server and actors from this Ray cluster (joined, or started
    here). On one started here, which cannot grow (a laptop), the reservations the command line leaves unset
    are sized to fit as a sweep's are (``cluster/resources.py``; no number changes), and a run that cannot fit
    is refused (ValueError) rather than left waiting for room; on a cluster that can grow, nothing changes.
    Returns the configs and the line to print (or None)."""
    import ray

    from dana_ray.cluster import resources
    from dana_ray.cluster.session import init_ray

    if not ray.is_initialized():  # joins the cluster in RAY_ADDRESS (ray job submit) or on this machine
        dashboard = init_ray()
        if dashboard:
            print(dashboard, file=sys.stderr)  # stdout holds the results (--json: one JSON line each)
    cluster, can_grow = resources.read_cluster()
    given, counts = _fixed(args), sorted({cfg.num_workers for cfg in configs})
    if can_grow:  # the runs are not under Tune: no trial process reserves CPUs (trial_cpus 0)
        return configs, resources.waiting_line(given, counts, args.executor, 0.0, cluster)
    chosen = resources.size_to_cluster(given, counts, args.executor, 0.0, cluster)
    if not chosen:
        return configs, None
    line = resources.sized_line(chosen, cluster, where="on the command line")
    return [cfg.with_options(**chosen) for cfg in configs], line


def main(argv: list[str] | None = None) -> int:
    """Runs one after another; each finished run is printed at once (a later failure loses nothing), then
    the mean/std table, on stdout; the per-epoch lines (and, on a terminal, the progress bar) on stderr. Bad
    input: one line on stderr, exit 2, nothing run. A run that fails: one line on stderr, the others still
    run, exit 1."""
    with show_notes():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    try:
        load_plugins(_given_plugins(argv))  # first: a plug-in executor's section adds flags
    except ValueError as error:
        return bad_input(error)
    args = _parser().parse_args(argv)
    try:
        configs = _checked_configs(args)
        line = None
        if not EXECUTORS[args.executor].in_trial_process:  # its actors are placed on the Ray cluster
            configs, line = _sized_to_ray(args, configs)
    except ValueError as error:
        return bad_input(error)
    rows, failed = [], 0
    # a progress bar over every run's epochs, on a terminal only (tqdm: small, well kept, and it keeps the
    # bar below the printed lines); off a terminal, CI logs get the lines alone
    bar = tqdm(
        total=sum(c.epochs for c in configs),
        unit="epoch",
        file=sys.stderr,
        disable=None,
        leave=False,
        dynamic_ncols=True,
    )

    def say(line: str, file: Any = sys.stdout) -> None:
        if bar.disable:
            print(line, file=file, flush=True)
        else:
            tqdm.write(line, file=file)

    if line:
        say(line, file=sys.stderr if args.json else sys.stdout)
    if not args.json:
        say(RUN_HEADER)
    for k, cfg in enumerate(configs, 1):
        label = f"{cfg.algorithm} N={cfg.num_workers} seed={cfg.seed}"
        bar.set_description(f"run {k}/{len(configs)}: {label}")
        done = bar.n

        def on_epoch(r: dict[str, Any], label: str = label) -> None:
            bar.update(1)
            if not (args.quiet or args.json):  # progress: on stderr, so stdout holds the results alone
                say(
                    f"{label} epoch {r['epoch']:3d}  test error {r['test_error']:6.2f}%  train loss "
                    f"{r['train_loss']:.4f}  mean delay {r['mean_delay']:5.1f}  gap {r['mean_gap']:.2e}  "
                    f"{r['gradients_per_s']:.0f} grad/s",
                    file=sys.stderr,
                )

        try:
            result = run(cfg, args.executor, callback=on_epoch)
        except Exception as error:  # one line per failed run; the finished ones are already printed
            say(f"error: {label}: {one_line(error)}", file=sys.stderr)
            failed += 1
            continue
        finally:
            bar.update(done + cfg.epochs - bar.n)  # a diverged or failed run: its epochs count as done
        rows.append(result)
        if args.json:
            say(json.dumps({k: v for k, v in result.items() if k != "history"}))
        else:
            say(format_run(result))
    bar.close()
    if not args.json and rows:
        print("\n" + format_summary(rows))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
