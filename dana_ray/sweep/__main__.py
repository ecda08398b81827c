"""``python -m dana_ray.sweep``: the driver runs under ``signals.supervise`` (stop signals handled from the
first line, through the imports, until the process ends; see ``signals``)."""

from dana_ray.sweep import signals


def _run() -> int:
    from dana_ray.sweep.cli import main

    return main()


if __name__ == "__main__":
    raise SystemExit(signals.supervise(_run, early_line="interrupted ({signal}) before the sweep started"))
