"""cluster.yaml passes Ray's own schema validation and keeps the cluster closed; the local rehearsal of the
cluster workflow (ray start, ray job submit, the dashboard's jobs API, ray stop) runs end to end."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def cluster():
    with open(os.path.join(REPO, "cluster.yaml")) as f:
        return yaml.safe_load(f)


def test_cluster_yaml_passes_rays_schema_validation(cluster):
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(cluster))  # what `ray up` runs before it talks to the cloud
    with pytest.raises(Exception, match="mistyped_key"):
        validate_config(prepare_config(dict(cluster, mistyped_key=1)))


def test_cluster_opens_no_port_but_ssh_and_keeps_token_auth(cluster):
    assert not cluster["provider"].get("security_group", {}).get("IpPermissions")  # Ray's default: SSH only
    start = next(c for c in cluster["head_start_ray_commands"] if "ray start --head" in c)
    assert "--dashboard-host=127.0.0.1" in start and "RAY_AUTH_MODE=token " in start
    # Prometheus and Grafana: started by dana_ray.monitoring, which listens on 127.0.0.1 only
    assert any(c.startswith("python -m dana_ray.monitoring") for c in cluster["head_start_ray_commands"])
    assert "RAY_PROMETHEUS_HOST=http://127.0.0.1:9090" in start and "RAY_GRAFANA_HOST=http://127.0.0.1:3000" in start
    assert "RAY_AUTH_MODE=token ray start --address" in " ".join(cluster["worker_start_ray_commands"])
    assert cluster["file_mounts"]["/home/ray/.ray/auth_token"] == "~/.ray/auth_token"


#: GPUs and vCPUs of the instance types cluster.yaml names
INSTANCES = {"g5.12xlarge": (4, 48), "p4d.24xlarge": (8, 96), "m6i.2xlarge": (0, 8), "c6in.8xlarge": (0, 32)}


def test_cluster_yamls_line_for_each_table_is_what_its_grid_reserves(cluster):
    """The comment giving one trial of each paper table at its largest N (GPUs, CPUs, nodes) is recomputed
    from the grid, with the executor's own reservation (its bundles); its actors fit the named node type
    (GPUs and CPUs per node), and that type's cap holds at least one such trial."""
    import math
    import re

    from dana_ray.config import EXECUTORS, TrialConfig
    from dana_ray.experiments.grid import load_grid

    text = open(os.path.join(REPO, "cluster.yaml")).read()
    lines = dict(re.findall(r"^#   (table\d): (.+)$", text, flags=re.M))
    types = cluster["available_node_types"]
    assert sorted(lines) == [f"table{k}" for k in range(2, 9)]
    for table, line in lines.items():
        grid = load_grid(table)
        n = max(grid.axes["num_workers"])
        cfg = TrialConfig.from_dict(dict(grid.trial, algorithm="dana", num_workers=n, schedule="round-robin", seed=0))
        bundles = EXECUTORS[grid.tune["executor"]].bundles(cfg.settings(), n, grid.tune["trial_cpus"])
        gpus, cpus = sum(b.get("GPU", 0) for b in bundles), sum(b.get("CPU", 0) for b in bundles)
        node_type = line.split()[-2]
        node_gpus, node_cpus = INSTANCES[types[node_type]["node_config"]["InstanceType"]]
        per_actor_gpus, per_actor_cpus = cfg.compute.gpus_per_actor, cfg.compute.cpus_per_actor
        actors_per_node = int(node_gpus / per_actor_gpus)
        assert actors_per_node * per_actor_cpus <= node_cpus, (table, "the actors' CPUs do not fit a node")
        nodes = math.ceil(gpus / node_gpus)
        word = "node" if nodes == 1 else "nodes"
        assert line == f"{cfg.model} N={n}, {gpus:g} GPU + {cpus:g} CPU -> {nodes} {node_type} {word}", table
        assert types[node_type]["max_workers"] >= nodes or node_type == "gpu_a100", (table, "its type's cap")
    assert sum(t.get("max_workers", 0) for t in types.values()) <= cluster["max_workers"]
    assert all(t.get("min_workers", 0) == 0 for t in types.values())


def test_cluster_yaml_installs_torch_once_per_node_and_uploads_no_ignored_file(cluster):
    """CUDA wheels on GPU nodes only, CPU wheels elsewhere, each skipped where torch is already installed;
    ``rsync_filter`` keeps what git ignores (data/, ray_results/) off the nodes."""
    types = cluster["available_node_types"]
    for name, node_type in types.items():
        if name == "head":
            commands = cluster["head_setup_commands"]
        else:
            commands = node_type["worker_setup_commands"]
        torch_line = next(c for c in commands if "pip install -q torch" in c)
        assert torch_line.startswith('python -c "import torch" 2>/dev/null || '), name
        cpu_only = INSTANCES[node_type["node_config"]["InstanceType"]][0] == 0
        assert ("download.pytorch.org/whl/cpu" in torch_line) == cpu_only, name
    assert not any("torch" in c for c in cluster["setup_commands"])
    assert cluster["rsync_filter"] == [".gitignore"]
    ignored = open(os.path.join(REPO, ".gitignore")).read().split()
    assert "/data/" in ignored and "/ray_results/" in ignored


README_FORMS = [  # as docs/guides/cluster.md gives them ("Rehearse it here"); the Ray executor's in the slow tier (the
    # default run's sweep tests run that executor through Tune)
    "python scripts/rehearse_cluster.py --smoke-test",
    pytest.param("python scripts/rehearse_cluster.py --smoke-test --executor ray", marks=pytest.mark.slow),
]


@pytest.mark.ray_cli
@pytest.mark.parametrize("command", README_FORMS)
def test_the_readmes_rehearsal_of_the_cluster_workflow_passes(command, tmp_path):
    with open(os.path.join(REPO, "docs", "guides", "cluster.md")) as f:
        assert f"`{command}`" in " ".join(f.read().split())
    args = command.split()[2:]
    done = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "scripts", "rehearse_cluster.py"),
            *args,
            "--num-cpus",
            "2",
            "--storage",
            str(tmp_path / "results"),
        ],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=REPO,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    shown = (
        "the dashboard's actors API lists the trials' <trial>/ParameterServer and Worker actors: "
        if "ray" in args
        else "the dashboard's actors API lists the Tune trial processes and no ParameterServer"
    )
    for check in (
        "the jobs API refuses a request without the token: HTTP 401",
        "the dashboard's jobs API lists the job as SUCCEEDED",
        shown,
        "results landed in the experiment directory",
    ):
        assert f"[ok] {check}" in out
    assert len(list((tmp_path / "results" / "rehearsal-quickstart").glob("*/result.json"))) == 33  # a seed per cell
    if shutil.which("prometheus") is None:
        assert "[skipped] live metrics: prometheus is not installed" in out
        pytest.skip("the rest passed; the live-metrics check needs Debian's prometheus (.ci/run installs it)")
    executor = "ray" if "ray" in args else "local"
    assert (
        "[ok] Prometheus holds every trial's live metrics, equal to its result.json (gradients applied, test "
        f"error): 33 of 33 trials agree (executor {executor})"
    ) in out, out[-3000:]
