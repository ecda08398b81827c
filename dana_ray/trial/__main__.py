"""``python -m dana_ray.trial``."""

from dana_ray.trial import main

if __name__ == "__main__":
    raise SystemExit(main())
