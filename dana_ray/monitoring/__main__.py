"""``python -m dana_ray.monitoring``."""

from dana_ray.monitoring import main

if __name__ == "__main__":
    raise SystemExit(main())
