"""Prometheus and Grafana on the head node, with Ray's own configuration and dana_ray's dashboard.

    python -m dana_ray.monitoring [--prometheus-port 9090] [--grafana-port 3000] [--no-grafana]

Run it on the head node after ``ray start --head`` (``cluster.yaml`` does, in its head start commands). It

1. starts ``prometheus`` (on PATH; Debian/Ubuntu: ``apt-get install prometheus``) on 127.0.0.1 with the
   scrape configuration Ray wrote for its session (``<session>/metrics/prometheus/prometheus.yml``: every
   node's metrics export port, found through Ray's service-discovery file as nodes come and go), and waits
   until it answers;
2. copies ``dana_ray/monitoring/grafana/dana_dashboard.json`` among the dashboards Ray provisions for Grafana, and
   starts Grafana (``grafana`` or ``grafana-server`` on PATH) with Ray's ``grafana.ini`` on 127.0.0.1,
   where it is installed; without it, Prometheus alone still answers queries;
3. prints where each listens and what to set so that the Ray dashboard's Metrics tab shows them
   (``RAY_PROMETHEUS_HOST``, ``RAY_GRAFANA_HOST`` in the environment of ``ray start --head``).

Both run on after this command returns (own sessions; their logs beside Prometheus's data). ``query`` reads
Prometheus's HTTP API (the rehearsal uses it to match exported figures against trials' result files).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from dana_ray.core.cli import bad_input, plain

#: dana_ray's Grafana dashboard: every exported figure (``engine/ray/metrics.py``) per trial.
GRAFANA_DASHBOARD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "grafana", "dana_dashboard.json")

RAY_TEMP = "/tmp/ray"


def session_dir(temp_dir: str = RAY_TEMP) -> str:
    """The running Ray session's folder on this node (``session_latest`` resolved)."""
    latest = os.path.join(temp_dir, "session_latest")
    if not os.path.isdir(latest):
        raise ValueError(f"no Ray session under {temp_dir}: start Ray first (ray start --head)")
    return os.path.realpath(latest)


def prometheus_config(session: str) -> str:
    path = os.path.join(session, "metrics", "prometheus", "prometheus.yml")
    if not os.path.isfile(path):
        raise ValueError(
            f"{path} does not exist: Ray writes it when the head starts with its dashboard "
            f"(ray[default] installed, --include-dashboard not false)"
        )
    return path


def start_prometheus(
    session: str, port: int = 9090, data_dir: str | None = None, binary: str = "prometheus", timeout_s: float = 60.0
) -> subprocess.Popen:
    """Prometheus on 127.0.0.1:``port`` with Ray's scrape configuration for ``session``, once it answers."""
    config = prometheus_config(session)
    executable = shutil.which(binary)
    if executable is None:
        raise ValueError(f"{binary} is not on PATH; install it (Debian/Ubuntu: apt-get install prometheus)")
    data_dir = data_dir or os.path.join(session, "metrics", "prometheus", "data")
    os.makedirs(data_dir, exist_ok=True)
    log = open(os.path.join(data_dir, "prometheus.log"), "ab")
    process = subprocess.Popen(
        [
            executable,
            f"--config.file={config}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--storage.tsdb.path={data_dir}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    _await_answer(f"http://127.0.0.1:{port}/-/ready", process, timeout_s, os.path.join(data_dir, "prometheus.log"))
    return process


def install_dashboard(session: str) -> str:
    """Copy dana_ray's Grafana dashboard among those Ray provisions for ``session``; returns its path."""
    folder = os.path.join(session, "metrics", "grafana", "dashboards")
    os.makedirs(folder, exist_ok=True)
    return shutil.copy(GRAFANA_DASHBOARD, os.path.join(folder, os.path.basename(GRAFANA_DASHBOARD)))


def start_grafana(
    session: str, port: int = 3000, homepath: str = "/usr/share/grafana", timeout_s: float = 60.0
) -> subprocess.Popen | None:
    """Grafana on 127.0.0.1:``port`` with Ray's ``grafana.ini`` (provisioned with Ray's dashboards and
    dana_ray's), once it answers; None where Grafana is not installed."""
    grafana = shutil.which("grafana")
    command = (
        [grafana, "server"]
        if grafana
        else ([shutil.which("grafana-server")] if shutil.which("grafana-server") else None)
    )
    if command is None:
        return None
    install_dashboard(session)
    ini = os.path.join(session, "metrics", "grafana", "grafana.ini")
    logs = os.path.join(session, "metrics", "grafana", "grafana.log")
    env = dict(os.environ, GF_SERVER_HTTP_ADDR="127.0.0.1", GF_SERVER_HTTP_PORT=str(port))
    process = subprocess.Popen(
        [*command, "--config", ini, "--homepath", homepath, "web"],
        env=env,
        stdout=open(logs, "ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    _await_answer(f"http://127.0.0.1:{port}/api/health", process, timeout_s, logs)
    return process


def _await_answer(url: str, process: subprocess.Popen, timeout_s: float, log: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            program = process.args[0] if isinstance(process.args, (list, tuple)) else process.args
            raise ValueError(f"{os.path.basename(str(program))} exited with code {process.returncode}; see {log}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)  # polling a process we started, until it answers
    process.terminate()
    raise ValueError(f"{url} did not answer within {timeout_s:.0f} s; see {log}")


def query(prometheus_url: str, promql: str) -> list[dict[str, Any]]:
    """The result vector of an instant query: ``[{"metric": {labels}, "value": [time, "value"]}, ...]``."""
    url = f"{prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.loads(response.read().decode())
    if body.get("status") != "success":
        raise ValueError(f"Prometheus refused {promql!r}: {body.get('error')}")
    return body["data"]["result"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dana_ray.monitoring", description=plain(__doc__.split("\n\n")[0]))
    p.add_argument("--prometheus-port", type=int, default=9090, help="Prometheus's port (default: 9090)")
    p.add_argument("--grafana-port", type=int, default=3000, help="Grafana's port (default: 3000)")
    p.add_argument("--no-grafana", action="store_true", help="Prometheus only")
    p.add_argument("--data-dir", help="Prometheus's storage (default: in the Ray session's metrics folder)")
    p.add_argument("--temp-dir", default=RAY_TEMP, help="Ray's temporary folder (ray start --temp-dir)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        session = session_dir(args.temp_dir)
        prometheus = start_prometheus(session, args.prometheus_port, args.data_dir)
        grafana = None if args.no_grafana else start_grafana(session, args.grafana_port)
    except ValueError as error:
        return bad_input(error)
    print(
        f"prometheus (pid {prometheus.pid}) on http://127.0.0.1:{args.prometheus_port}, scraping what "
        f"{prometheus_config(session)} lists"
    )
    if grafana is not None:
        print(f"grafana (pid {grafana.pid}) on http://127.0.0.1:{args.grafana_port}, dashboard 'dana_ray' among Ray's")
    elif not args.no_grafana:
        print("grafana is not installed: Prometheus alone (the README says how to add Grafana)", file=sys.stderr)
    print(
        f"for the Ray dashboard's Metrics tab, start the head with RAY_PROMETHEUS_HOST=http://127.0.0.1:"
        f"{args.prometheus_port}" + (f" RAY_GRAFANA_HOST=http://127.0.0.1:{args.grafana_port}" if grafana else "")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
