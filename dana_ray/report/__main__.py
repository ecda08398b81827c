"""``python -m dana_ray.report``."""

from dana_ray.report import main

if __name__ == "__main__":
    raise SystemExit(main())
