"""Rehearse the cluster workflow on this machine: the same commands as on a `ray up` cluster, minus the cloud.

    python scripts/rehearse_cluster.py [GRID] [--smoke-test] [--executor ray|local] [--num-cpus N]

1. ``ray start --head`` here, token authentication on, the dashboard on 127.0.0.1 only;
2. the jobs API refuses a request without the token (HTTP 401);
3. ``ray job submit --working-dir . -- python -m dana_ray.sweep GRID`` (the quickstart by default), then
   ``ray job logs --follow`` and ``ray job status``;
4. the dashboard's jobs API (with the token) lists the job as SUCCEEDED, and its actors API shows what the
   grid's executor runs: under ``ray``, the trials' ``<trial>/ParameterServer`` and Worker actors by name
   (pooled: a Tune trial process keeps its server for its next trials); under ``local`` (trial-parallel, the
   quickstart's), the Tune trial processes and no ParameterServer;
5. the live metrics, under either executor: Prometheus, started as ``python -m dana_ray.monitoring`` starts
   it (on 127.0.0.1, with the scrape configuration Ray wrote for the session) right after ``ray start``,
   holds every trial's series, and each trial's gradients applied (summed over its workers) and last test
   error equal what its ``result.json`` says. Skipped, with the reason, where ``prometheus`` is not
   installed (Debian/Ubuntu: ``apt-get install prometheus``);
6. ``ray stop``, always.

Exit code 0 only if every step did what it should. Results land in ``--storage`` (default a new temporary
directory), as they would on the cluster's shared storage; the script prints where. It uses a throwaway
token (``RAY_AUTH_TOKEN``) unless one is already set, and writes nothing to ``~/.ray``. It stops every Ray
process on this machine at the end (that is what ``ray stop`` does): do not run it beside other Ray work.
"""

from __future__ import annotations

import argparse
import glob
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


def _same(got: tuple | None, want: tuple) -> bool:
    return got is not None and None not in got and all(abs(a - b) <= 1e-9 * max(1.0, abs(b)) for a, b in zip(got, want))


class Rehearsal:
    def __init__(self, num_cpus: int) -> None:
        self.num_cpus = num_cpus
        self.token = os.environ.get("RAY_AUTH_TOKEN") or secrets.token_hex(32)
        self.env = dict(
            os.environ,
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN=self.token,
            RAY_USAGE_STATS_ENABLED="0",
            PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
        )
        self.env.pop("RAY_ADDRESS", None)
        self.dashboard = f"http://127.0.0.1:{free_port()}"
        self.failures: list[str] = []

    def ray(self, *args: str, check: bool = True, capture: bool = False) -> subprocess.CompletedProcess:
        print(f"$ ray {' '.join(args)}", flush=True)
        return subprocess.run(
            [ray_cli(), *args],
            env=self.env,
            cwd=REPO,
            check=check,
            text=True,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.STDOUT if capture else None,
        )

    def expect(self, what: str, ok: bool, detail: str = "") -> None:
        print(f"[{'ok' if ok else 'FAILED'}] {what}" + (f": {detail}" if detail else ""), flush=True)
        if not ok:
            self.failures.append(what)

    def start(self) -> None:
        port = self.dashboard.rsplit(":", 1)[1]
        self.ray(
            "start",
            "--head",
            f"--port={free_port()}",
            f"--dashboard-port={port}",
            "--dashboard-host=127.0.0.1",
            "--include-dashboard=true",
            f"--num-cpus={self.num_cpus}",
            "--disable-usage-stats",
        )

    def run_sweep(self, grid: str, storage: str, name: str, smoke_test: bool, executor: str | None) -> str:
        status, _ = http_get(f"{self.dashboard}/api/jobs/", token=None)
        self.expect("the jobs API refuses a request without the token", status == 401, f"HTTP {status}")
        job_id = f"dana-rehearsal-{int(time.time())}"
        sweep = ["python", "-m", "dana_ray.sweep", grid, "--storage", storage, "--name", name]
        self.ray(
            "job",
            "submit",
            "--address",
            self.dashboard,
            "--submission-id",
            job_id,
            "--working-dir",
            ".",
            "--runtime-env-json",
            json.dumps({"excludes": [".git", "*.egg-info"]}),
            "--no-wait",
            "--",
            *sweep,
            *(["--smoke-test"] if smoke_test else []),
            *(["--executor", executor] if executor else []),
        )
        self.ray("job", "logs", "--address", self.dashboard, "--follow", job_id)
        self.ray("job", "status", "--address", self.dashboard, job_id, check=False)
        return job_id

    def check_dashboard(self, job_id: str, experiment: str, expected_trials: int, executor: str) -> None:
        status, body = http_get(f"{self.dashboard}/api/jobs/", self.token)
        jobs = {j.get("submission_id"): j for j in json.loads(body)} if status == 200 else {}
        state = jobs.get(job_id, {}).get("status")
        self.expect(
            "the dashboard's jobs API lists the job as SUCCEEDED",
            state == "SUCCEEDED",
            f"HTTP {status}, status {state}",
        )
        status, body = http_get(f"{self.dashboard}/api/v0/actors?limit=10000&detail=false", self.token)
        actors = json.loads(body)["data"]["result"]["result"] if status == 200 else []
        names = [a.get("name") or "" for a in actors]
        servers = sorted(n for n in names if n.endswith("/ParameterServer"))
        workers = [n for n in names if "/Worker-" in n]
        if executor == "ray":  # pooled: a Tune trial process keeps its server for its next trials
            ok = (
                bool(servers)
                and bool(workers)
                and len(servers) <= expected_trials
                and all(n.startswith(f"{experiment}/") for n in servers)
            )
            self.expect(
                "the dashboard's actors API lists the trials' <trial>/ParameterServer and Worker actors",
                ok,
                f"{len(servers)} servers for {expected_trials} trials (e.g. "
                f"{servers[0] if servers else '-'}), {len(workers)} workers",
            )
        else:  # each trial simulates its workers in its own Tune process (a reused ImplicitFunc actor)
            # Ray names the class by its qualified name: wrap_function.<locals>.ImplicitFunc
            trials = [a for a in actors if (a.get("class_name") or "").rsplit(".", 1)[-1] == "ImplicitFunc"]
            self.expect(
                "the dashboard's actors API lists the Tune trial processes and no ParameterServer (executor local)",
                bool(trials) and not servers,
                f"HTTP {status}, {len(actors)} actors: {len(trials)} trial processes, {len(servers)} servers",
            )

    def start_prometheus(self, data_dir: str) -> None:
        """``python -m dana_ray.monitoring --no-grafana`` (what cluster.yaml runs on the head), on a free port;
        skipped, saying so, where prometheus is not installed."""
        import re
        import shutil

        self.prometheus = None
        if shutil.which("prometheus") is None:
            print("[skipped] live metrics: prometheus is not installed (apt-get install prometheus)", flush=True)
            return
        port = free_port()
        command = [
            sys.executable,
            "-m",
            "dana_ray.monitoring",
            "--no-grafana",
            "--prometheus-port",
            str(port),
            "--data-dir",
            data_dir,
        ]
        print(f"$ python -m dana_ray.monitoring {' '.join(command[3:])}", flush=True)
        done = subprocess.run(command, env=self.env, cwd=REPO, text=True, capture_output=True, timeout=120)
        print(done.stdout + done.stderr, end="", flush=True)
        started = re.search(r"prometheus \(pid (\d+)\) on (http://\S+),", done.stdout)
        self.expect(
            "`python -m dana_ray.monitoring` starts Prometheus with the scrape configuration Ray wrote for its session",
            done.returncode == 0 and started is not None,
            f"exit code {done.returncode}" + ("" if started else f": {' '.join(done.stderr.split()[-40:])}"),
        )
        if started:
            self.prometheus, self.prometheus_url = int(started.group(1)), started.group(2)

    def check_metrics(self, experiment_dir: str, experiment: str, timeout_s: float = 90.0) -> None:
        """Every trial's exported figures, read back from Prometheus, equal its result file's: gradients
        applied (summed over workers and epochs) and the last epoch's test error. Prometheus scrapes every
        10 s (Ray's configuration), so this asks until they agree or ``timeout_s`` passes."""
        if self.prometheus is None:
            return
        from dana_ray import monitoring

        expected = {}
        for result in sorted(glob.glob(os.path.join(experiment_dir, "*", "result.json"))):
            rows = [json.loads(line) for line in open(result) if line.strip()]
            rows = [r for r in rows if "epoch" in r]
            trial = f"{experiment}/{os.path.basename(os.path.dirname(result))}"
            expected[trial] = (sum(r["gradients"] for r in rows), rows[-1]["test_error"] if rows else None)
        selector = f'{{trial=~"{experiment}/.*"}}'
        deadline, seen = time.monotonic() + timeout_s, {}
        while True:
            try:
                gradients = {
                    r["metric"]["trial"]: float(r["value"][1])
                    for r in monitoring.query(
                        self.prometheus_url, f"sum by (trial) (ray_dana_gradients_applied_total{selector})"
                    )
                }
                errors = {
                    r["metric"]["trial"]: float(r["value"][1])
                    for r in monitoring.query(self.prometheus_url, f"max by (trial) (ray_dana_test_error{selector})")
                }
                seen = {t: (gradients.get(t), errors.get(t)) for t in expected}
            except (OSError, ValueError) as error:
                seen = {"query failed": str(error)}
            agree = [t for t, want in expected.items() if _same(seen.get(t), want)]
            if len(agree) == len(expected) or time.monotonic() > deadline:
                break
            time.sleep(2)  # Prometheus's next scrape
        executors = (
            {r["metric"].get("executor") for r in monitoring.query(self.prometheus_url, f"ray_dana_step{selector}")}
            if agree
            else set()
        )
        example = next(iter(expected), "-")
        self.expect(
            "Prometheus holds every trial's live metrics, equal to its result.json (gradients applied, test error)",
            bool(expected) and len(agree) == len(expected),
            f"{len(agree)} of {len(expected)} trials agree (executor {', '.join(sorted(map(str, executors)))}); "
            f"e.g. {example}: result.json {expected.get(example)}, Prometheus {seen.get(example)}",
        )

    def stop(self) -> None:
        if getattr(self, "prometheus", None) is not None:  # the monitoring command leaves it running
            import signal

            try:
                os.kill(self.prometheus, signal.SIGTERM)
            except ProcessLookupError:
                pass
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
    from dana_ray.experiments.grid import load_grid

    grid = load_grid(args.grid, smoke_test=args.smoke_test)
    grid_arg = os.path.abspath(grid.path)
    storage = os.path.abspath(args.storage or tempfile.mkdtemp(prefix="dana-rehearsal-"))
    name = f"rehearsal-{grid.name}"
    rehearsal, started = Rehearsal(args.num_cpus), time.perf_counter()
    try:
        rehearsal.start()
        rehearsal.start_prometheus(os.path.join(storage, ".prometheus"))
        job_id = rehearsal.run_sweep(grid_arg, storage, name, args.smoke_test, args.executor)
        rehearsal.check_dashboard(job_id, name, len(grid.trials()), args.executor or grid.tune["executor"])
        rehearsal.check_metrics(os.path.join(storage, name), name)
    except subprocess.CalledProcessError as error:
        rehearsal.expect(f"`{' '.join(error.cmd[1:])}`", False, f"exit code {error.returncode}")
    finally:
        rehearsal.stop()
    results = os.path.join(storage, name)
    rehearsal.expect("results landed in the experiment directory", os.path.isdir(results), results)
    print(
        f"\nrehearsal {'passed' if not rehearsal.failures else 'FAILED: ' + '; '.join(rehearsal.failures)} "
        f"in {time.perf_counter() - started:.0f} s; results in {results}; "
        f"report: python -m dana_ray.report {results}"
    )
    return 0 if not rehearsal.failures else 1


if __name__ == "__main__":
    raise SystemExit(main())
