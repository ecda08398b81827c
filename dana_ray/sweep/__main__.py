"""``python -m dana_ray.sweep``."""

from dana_ray.sweep import main

if __name__ == "__main__":
    raise SystemExit(main())
