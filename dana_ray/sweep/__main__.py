"""``python -m dana_ray.sweep``: stop signals handled from the first line (``signals``), through the imports,
until the process ends (the deadline outlives ``main``: Ray's shutdown at exit is bounded too)."""

import sys

from dana_ray.sweep import signals

if __name__ == "__main__":
    with signals.handled(outlive=True):
        try:
            from dana_ray.sweep.cli import main
        except KeyboardInterrupt:
            print(f"interrupted ({signals.received() or 'SIGINT'}) before the sweep started", file=sys.stderr)
            raise SystemExit(signals.EXIT_INTERRUPTED) from None
        code = main()
    raise SystemExit(code)
