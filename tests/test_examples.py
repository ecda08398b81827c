"""Every file under ``examples/`` is run by a test: the API examples here, the plug-ins in test_plugins.py.
The docs show these files (``literalinclude``), so what a reader copies is what ran."""

from __future__ import annotations

import os
import runpy

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(REPO, "examples")

#: Each example file -> the test that runs it.
RUN_BY = {
    "api/rule_by_hand.py": "test_examples.py::test_a_rule_by_hand_reaches_the_least_squares_optimum",
    "api/run_one_trial.py": "test_examples.py::test_one_trial_runs_and_prints_its_result",
    "api/run_on_ray.py": "test_examples.py::test_the_ray_example_gives_the_local_numbers",
    **{
        f"plugins/{name}": "test_plugins.py"
        for name in ("my_rule.py", "my_local_rule.py", "my_data.py", "my_model.py", "my_executor.py", "my_grid.yaml")
    },
}


def example(name: str) -> str:
    return os.path.join(EXAMPLES, name)


def test_every_example_is_run_by_a_test_and_shown_in_the_docs():
    found = {
        os.path.relpath(os.path.join(root, f), EXAMPLES)
        for root, _, files in os.walk(EXAMPLES)
        for f in files
        if not f.endswith(".pyc")
    }
    assert found == set(RUN_BY)
    docs = ""
    for root, _, files in os.walk(os.path.join(REPO, "docs")):
        docs += "".join(open(os.path.join(root, f)).read() for f in files if f.endswith(".md"))
    assert all(f"examples/{name}" in docs for name in RUN_BY), [n for n in RUN_BY if f"examples/{n}" not in docs]


def test_a_rule_by_hand_reaches_the_least_squares_optimum(capsys):
    runpy.run_path(example("api/rule_by_hand.py"), run_name="__main__")
    line = capsys.readouterr().out.strip()
    loss, best = line.split("-> ")[1].split(" (the optimum: ")
    assert float(loss) == pytest.approx(float(best.rstrip(")")), abs=1e-4)


def test_one_trial_runs_and_prints_its_result(capsys):
    runpy.run_path(example("api/run_one_trial.py"), run_name="__main__")
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines[:2]] == ["epoch 1", "epoch 2"]
    assert lines[2].startswith("test error ") and "params_sha256 " in lines[2]


@pytest.mark.usefixtures("ray_session")
def test_the_ray_example_gives_the_local_numbers(capsys):
    runpy.run_path(example("api/run_on_ray.py"), run_name="__main__")
    on_ray, local = capsys.readouterr().out.splitlines()[-2:]
    assert on_ray.split(": ", 1)[1] == local.split(": ", 1)[1].lstrip()
