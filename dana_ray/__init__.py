"""dana_ray: DANA and the asynchronous SGD family (ASGD, NAG-ASGD, Multi-ASGD, SSGD) as a Ray application.

Layers, each importing only those above it in this list: ``checks``, ``algorithms``, ``schedules``,
``models``, ``data``, ``lr_schedule``, ``config``, ``engine``, ``trial``. See docs/architecture.md.
"""

__version__ = "0.1.0"
