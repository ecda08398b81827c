"""Sphinx configuration of the docs site: ``python -m sphinx -W -b html docs docs/_build/html``.

Sphinx with MyST (Ray's choice): the pages are Markdown, the API reference comes from the package's docstrings
(``autodoc``), the command-line reference from the argument parsers themselves (``sphinx-argparse``), and
every code example is a file under ``examples/`` that the tests run, included with ``literalinclude``.
"""

import os
import sys

import dana_ray

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "_ext"))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks.tables

project = "dana_ray"
author = "the dana_ray authors"
release = version = dana_ray.__version__
copyright = "2026, the dana_ray authors"

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinxarg.ext", "benchmark_tables"]
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3  # [text](page.md#a-heading) for headings down to ###
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "_ext", "benchmarks"]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": False}

html_theme = "furo"
html_title = f"dana_ray {release}"
html_static_path: list[str] = []
