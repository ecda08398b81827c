"""The monitoring command's refusals and the Grafana dashboard's queries (the live path itself, Prometheus
scraping a Ray session, is checked by the rehearsal in tests/test_cluster.py and the export port in
tests/test_sweep.py)."""

from __future__ import annotations

import json
import os
import re

from dana_ray import monitoring
from dana_ray.engine.ray.metrics import EXPORTED
from dana_ray.monitoring import GRAFANA_DASHBOARD


def test_the_dashboard_plots_every_exported_metric_and_nothing_else():
    dashboard = json.load(open(GRAFANA_DASHBOARD))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs.append(dashboard["templating"]["list"][1]["definition"])
    named = {re.sub(r"_(bucket|sum|count)$", "", name) for e in exprs for name in re.findall(r"\bray_dana_\w+", e)}
    assert named == set(EXPORTED)
    assert all('trial=~"$trial"' in e for e in exprs[:-1])  # every panel follows the trial selector
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_the_monitoring_command_refuses_in_one_line_without_a_session_or_its_config(tmp_path, capsys):
    assert monitoring.main(["--temp-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: no Ray session under {tmp_path}: start Ray first (ray start --head)\n"
    session = tmp_path / "session_2026"
    session.mkdir()
    os.symlink(session, tmp_path / "session_latest")
    assert monitoring.main(["--temp-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert (
        "metrics/prometheus/prometheus.yml does not exist: Ray writes it when the head starts with its dashboard" in err
        and len(err.splitlines()) == 1
    )


def test_install_dashboard_puts_it_among_rays_provisioned_dashboards(tmp_path):
    path = monitoring.install_dashboard(str(tmp_path))
    assert path == str(tmp_path / "metrics" / "grafana" / "dashboards" / "dana_dashboard.json")
    assert json.load(open(path))["uid"] == "dana-ray"
