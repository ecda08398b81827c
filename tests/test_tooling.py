"""The project's own checks, as a contributor runs them: lint and format (ruff), types (mypy), the layer
contract (import-linter), and the public API that documented examples keep to."""

from __future__ import annotations

import ast
import importlib.util
import os
import pkgutil
import re
import shutil
import subprocess
import sys

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import dana_ray

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The modules a user may import: the public API, and the laws.
PUBLIC = {"dana_ray", "dana_ray.testing"}
#: The packages that may import Ray.
RAY_FACING = ("dana_ray.engine.ray", "dana_ray.cluster", "dana_ray.trial", "dana_ray.sweep")


def _run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)


def _tool(name: str) -> str:
    path = shutil.which(name, path=os.path.dirname(sys.executable)) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return path


def test_ruff_lint_and_format_are_clean():
    lint = _run(_tool("ruff"), "check", ".")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    form = _run(_tool("ruff"), "format", "--check", ".")
    assert form.returncode == 0, form.stdout + form.stderr


def test_the_package_type_checks():
    checked = _run(sys.executable, "-m", "mypy")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_import_contracts_hold():
    """The layers of docs/architecture.md, Ray only in the Ray-facing packages, no rule known by name outside
    the registry, no cycle (``[tool.importlinter]`` in pyproject.toml)."""
    linted = _run(_tool("lint-imports"))
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert "0 broken" in linted.stdout or "BROKEN" not in linted.stdout


def test_the_ray_contract_names_every_module_that_is_not_ray_facing():
    """The forbidden contract lists its sources one by one (the engine holds both kinds): a new module outside
    the Ray-facing packages must be listed there, or Ray could creep into it unchecked."""
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        contracts = tomllib.load(f)["tool"]["importlinter"]["contracts"]
    listed = next(c for c in contracts if c.get("forbidden_modules") == ["ray"])["source_modules"]
    modules = [m.name for m in pkgutil.walk_packages(dana_ray.__path__, "dana_ray.") if _imports_anything(m.name)]
    unguarded = [
        m
        for m in modules
        if not m.startswith(RAY_FACING)
        and not m.endswith("__main__")
        and not any(m == s or m.startswith(s + ".") for s in listed)
    ]
    assert unguarded == [], f"not in the 'Only the Ray-facing packages import ray' contract: {unguarded}"


def _imports_anything(module: str) -> bool:
    """Whether the module has an import statement (a package's docstring-only ``__init__`` cannot import Ray)."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    tree = ast.parse(open(spec.origin).read())
    return any(isinstance(node, (ast.Import, ast.ImportFrom)) for node in ast.walk(tree))


def _documented_python() -> list[tuple[str, str]]:
    """(where, code) of every Python example a user reads: any code block of the README and the docs (the
    docs include the files under examples/, which are the rest)."""
    found = []
    pages = [os.path.join(REPO, "README.md")]
    for root, _, files in os.walk(os.path.join(REPO, "docs")):
        pages += [os.path.join(root, f) for f in sorted(files) if f.endswith(".md")]
    for page in pages:
        blocks = re.findall(r"```python\n(.*?)```", open(page).read(), re.S)
        found += [(f"{os.path.relpath(page, REPO)} block {k}", block) for k, block in enumerate(blocks)]
    for root, _, files in os.walk(os.path.join(REPO, "examples")):
        found += [
            (os.path.relpath(os.path.join(root, f), REPO), open(os.path.join(root, f)).read())
            for f in sorted(files)
            if f.endswith(".py")
        ]
    return found


def _imported(code: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n == "dana_ray" or n.startswith("dana_ray.")}


def test_documented_examples_import_only_the_public_api():
    examples = _documented_python()
    assert len(examples) >= 8  # the plug-ins (rule, local-steps rule, data set, model, executor), the API's
    private = {where: sorted(_imported(code) - PUBLIC) for where, code in examples if _imported(code) - PUBLIC}
    assert private == {}, f"examples that import private modules: {private}"


def test_an_example_that_imports_a_private_module_is_caught():
    assert _imported("from dana_ray.algorithms.ops import scaled_add\nimport dana_ray\n") - PUBLIC == {
        "dana_ray.algorithms.ops"
    }


def test_the_public_api_is_lazy_and_complete():
    """``import dana_ray`` imports neither torch nor Ray; every public name resolves; nothing else is public."""
    cold = _run(
        sys.executable, "-c", "import sys, dana_ray; print(sorted(m for m in ('torch', 'ray') if m in sys.modules))"
    )
    assert cold.returncode == 0 and cold.stdout.strip() == "[]", cold.stdout + cold.stderr
    missing = [name for name in dana_ray.__all__ if getattr(dana_ray, name, None) is None]
    assert missing == []
    with pytest.raises(AttributeError, match="has no attribute 'GradientWorker'"):
        _ = dana_ray.GradientWorker
