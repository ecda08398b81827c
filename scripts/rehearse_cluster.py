"""Rehearse the cluster workflow on this machine: the same commands as on a `ray up` cluster, minus the cloud.

    python scripts/rehearse_cluster.py [GRID] [--smoke-test] [--executor ray|local] [--num-cpus N]

1. ``ray start --head`` here, token authentication on, the dashboard on 127.0.0.1 only;
2. the jobs API refuses a request without the token (HTTP 401);
3. ``ray job submit --working-dir . -- python -m dana_ray.sweep GRID`` (the quickstart by default), then
   ``ray job logs --follow`` and ``ray job status``;
4. the dashboard's jobs API (with the token) lists the job as SUCCEEDED, and its actors API shows what the
   grid's executor runs: under ``ray``, the trials' ``<trial>/ParameterServer`` and Worker actors by name
   (pooled: a Tune trial process keeps its server for its next trials); under ``local`` (trial-parallel, the quickstart's), the Tune trial processes and no ParameterServer;
5. ``ray stop``, always.

Exit code 0 only if every step did what it should. Results land in ``--storage`` (default a new temporary
directory), as they would on the cluster's shared storage; the script prints where. It uses a throwaway
token (``RAY_AUTH_TOKEN``) unless one is already set, and writes nothing to ``~/.ray``. It stops every Ray
process on this machine at the end (that is what ``ray stop`` does): do not run it beside other Ray work.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_cli() -> str:
    """The `ray` next to this Python, so the cluster and the job run the same interpreter."""
    candidate = os.path.join(os.path.dirname(sys.executable), "ray")
    return candidate if os.path.exists(candidate) else "ray"


def http_get(url: str, token: str | None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


class Rehearsal:
    def __init__(self, num_cpus: int) -> None:
        self.num_cpus = num_cpus
        self.token = os.environ.get("RAY_AUTH_TOKEN") or secrets.token_hex(32)
        self.env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=self.token, RAY_USAGE_STATS_ENABLED="0",
                        PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
        self.env.pop("RAY_ADDRESS", None)
        self.dashboard = f"http://127.0.0.1:{free_port()}"
        self.failures: list[str] = []

    def ray(self, *args: str, check: bool = True, capture: bool = False) -> subprocess.CompletedProcess:
        print(f"$ ray {' '.join(args)}", flush=True)
        return subprocess.run([ray_cli(), *args], env=self.env, cwd=REPO, check=check, text=True,
                              stdout=subprocess.PIPE if capture else None, stderr=subprocess.STDOUT if capture else None)

    def expect(self, what: str, ok: bool, detail: str = "") -> None:
        print(f"[{'ok' if ok else 'FAILED'}] {what}" + (f": {detail}" if detail else ""), flush=True)
        if not ok:
            self.failures.append(what)

    def start(self) -> None:
        port = self.dashboard.rsplit(":", 1)[1]
        self.ray("start", "--head", f"--port={free_port()}", f"--dashboard-port={port}", "--dashboard-host=127.0.0.1",
                 "--include-dashboard=true", f"--num-cpus={self.num_cpus}", "--disable-usage-stats")

    def run_sweep(self, grid: str, storage: str, name: str, smoke_test: bool, executor: str | None) -> str:
        status, body = http_get(f"{self.dashboard}/api/jobs/", token=None)
        self.expect("the jobs API refuses a request without the token", status == 401, f"HTTP {status}")
        job_id = f"dana-rehearsal-{int(time.time())}"
        sweep = ["python", "-m", "dana_ray.sweep", grid, "--storage", storage, "--name", name]
        self.ray("job", "submit", "--address", self.dashboard, "--submission-id", job_id, "--working-dir", ".",
                 "--runtime-env-json", json.dumps({"excludes": [".git", "*.egg-info"]}), "--no-wait", "--",
                 *sweep, *(["--smoke-test"] if smoke_test else []), *(["--executor", executor] if executor else []))
        self.ray("job", "logs", "--address", self.dashboard, "--follow", job_id)
        self.ray("job", "status", "--address", self.dashboard, job_id, check=False)
        return job_id

    def check_dashboard(self, job_id: str, experiment: str, expected_trials: int, executor: str) -> None:
        status, body = http_get(f"{self.dashboard}/api/jobs/", self.token)
        jobs = {j.get("submission_id"): j for j in json.loads(body)} if status == 200 else {}
        state = jobs.get(job_id, {}).get("status")
        self.expect("the dashboard's jobs API lists the job as SUCCEEDED", state == "SUCCEEDED",
                    f"HTTP {status}, status {state}")
        status, body = http_get(f"{self.dashboard}/api/v0/actors?limit=10000&detail=false", self.token)
        actors = json.loads(body)["data"]["result"]["result"] if status == 200 else []
        names = [a.get("name") or "" for a in actors]
        servers = sorted(n for n in names if n.endswith("/ParameterServer"))
        workers = [n for n in names if "/Worker-" in n]
        if executor == "ray":  # pooled: a Tune trial process keeps its server for its next trials
            ok = bool(servers) and bool(workers) and len(servers) <= expected_trials and all(
                n.startswith(f"{experiment}/") for n in servers)
            self.expect("the dashboard's actors API lists the trials' <trial>/ParameterServer and Worker actors",
                        ok, f"{len(servers)} servers for {expected_trials} trials (e.g. "
                            f"{servers[0] if servers else '-'}), {len(workers)} workers")
        else:  # each trial simulates its workers in its own Tune process (a reused ImplicitFunc actor)
            trials = [a for a in actors if a.get("class_name") == "ImplicitFunc"]
            self.expect("the dashboard's actors API lists the Tune trial processes and no ParameterServer "
                        "(executor local)", bool(trials) and not servers,
                        f"{len(trials)} trial processes, {len(servers)} servers")

    def stop(self) -> None:
        stopped = self.ray("stop", check=False, capture=True)
        print("\n".join((stopped.stdout or "").strip().splitlines()[-1:]), flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("grid", nargs="?", default="quickstart", help="grid file or tune_configs/ name")
    p.add_argument("--smoke-test", action="store_true", help="one epoch of the first seed of every cell")
    p.add_argument("--executor", choices=("ray", "local"), help="overrides the grid's tune.executor")
    p.add_argument("--num-cpus", type=int, default=os.cpu_count() or 2)
    p.add_argument("--storage", help="where the sweep writes (default: a new temporary directory)")
    args = p.parse_args(argv)

    sys.path.insert(0, REPO)
    from dana_ray.grid import load_grid

    grid = load_grid(args.grid, smoke_test=args.smoke_test)
    grid_arg = os.path.abspath(grid.path)
    storage = os.path.abspath(args.storage or tempfile.mkdtemp(prefix="dana-rehearsal-"))
    name = f"rehearsal-{grid.name}"
    rehearsal, started = Rehearsal(args.num_cpus), time.perf_counter()
    try:
        rehearsal.start()
        job_id = rehearsal.run_sweep(grid_arg, storage, name, args.smoke_test, args.executor)
        rehearsal.check_dashboard(job_id, name, len(grid.trials()), args.executor or grid.tune["executor"])
    except subprocess.CalledProcessError as error:
        rehearsal.expect(f"`{' '.join(error.cmd[1:])}`", False, f"exit code {error.returncode}")
    finally:
        rehearsal.stop()
    results = os.path.join(storage, name)
    rehearsal.expect("results landed in the experiment directory", os.path.isdir(results), results)
    print(f"\nrehearsal {'passed' if not rehearsal.failures else 'FAILED: ' + '; '.join(rehearsal.failures)} "
          f"in {time.perf_counter() - started:.0f} s; results in {results}; "
          f"report: python -m dana_ray.report {results}")
    return 0 if not rehearsal.failures else 1


if __name__ == "__main__":
    raise SystemExit(main())
