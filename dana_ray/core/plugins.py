"""Plug-ins: modules that register their own rules, data sets and models before a trial is built.

A trial config (and so a grid's ``trial:`` section) may name ``plugins: [my_rules, ./models/mine.py]``: each
entry is a module name importable where the trial runs (``ray job submit --working-dir .`` puts the working
directory on every actor's path), or the path of a Python file (``.py``), made absolute when the config is
read. ``TrialConfig.from_dict`` imports them first, in every process that reads a config (the driver, the
Tune trial, the ParameterServer and every Worker actor), so a registered name is known everywhere.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable
from types import ModuleType

from dana_ray.core.cli import one_line


def is_file_plugin(entry: str) -> bool:
    return entry.endswith(".py") or os.sep in entry


def normalize(entry: str) -> str:
    """A file plug-in's absolute path (``~`` expanded); a module name unchanged."""
    return os.path.abspath(os.path.expanduser(entry)) if is_file_plugin(entry) else entry


def load_plugins(entries: Iterable[str]) -> list[ModuleType]:
    """Import each plug-in once per process (a module again returns the one already imported)."""
    modules = []
    for entry in entries:
        if not isinstance(entry, str) or not entry:
            raise ValueError(f"plugins: expected module names or .py paths, got {entry!r}")
        try:
            modules.append(_import_file(entry) if is_file_plugin(entry) else importlib.import_module(entry))
        except ValueError:
            raise
        except Exception as error:  # an import error of any kind is the plug-in's, named in one line
            cause = one_line(error)
            raise ValueError(f"plugins: cannot import {entry!r}: {type(error).__name__}: {cause}") from None
    return modules


def _import_file(path: str) -> ModuleType:
    path = normalize(path)
    if not os.path.isfile(path):
        raise ValueError(f"plugins: no such file {path!r}")
    # one module per file, named after it and its path (two plug-ins called rules.py do not collide)
    name = (
        f"dana_ray_plugin_{os.path.splitext(os.path.basename(path))[0]}_{hashlib.sha1(path.encode()).hexdigest()[:8]}"
    )
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"plugins: {path!r} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
