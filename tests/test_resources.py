"""Trials sized to a cluster that cannot grow, or refused in one line; never a trial that waits forever."""

from __future__ import annotations

import pytest
from helpers import trial_dict

from dana_ray.cluster.resources import Cluster, size_to_cluster, sized_line, trial_need, waiting_line

LAPTOP = Cluster(cpus=2, gpus=0, node_cpus=2, node_gpus=0)


def test_defaults_that_do_not_fit_a_laptop_are_sized_to_it_and_change_no_thread_count():
    # the README's two-line grid: N = 2, every resource at its default: 0.25 + 1 + 2 x 1 = 3.25 CPUs
    assert trial_need({}, 2, "ray", 0.25)[0] == 3.25
    chosen = size_to_cluster({"model": "cnn"}, [2], "ray", 0.25, LAPTOP)
    assert chosen == {"num_actors": 1, "server_cpus": 0.875, "cpus_per_actor": 0.875}
    assert trial_need(chosen, 2, "ray", 0.25)[0] <= 2
    assert max(1, round(chosen["cpus_per_actor"])) == 1  # an actor's torch threads, as at the default
    assert sized_line(chosen, LAPTOP).startswith(
        "resources: sized to this cluster (2 CPUs and 0 GPUs, which "
        "cannot grow): num_actors 1, server_cpus 0.875, cpus_per_actor 0.875"
    )


def test_num_actors_is_sized_first_and_what_fits_is_left_alone():
    big = Cluster(cpus=8, gpus=0, node_cpus=8, node_gpus=0)
    assert size_to_cluster({}, [2, 4, 16], "ray", 0.25, big) == {"num_actors": 6}  # 0.25 + 1 + 6 = 7.25 <= 8
    assert (
        size_to_cluster(trial_dict(num_actors=1, cpus_per_actor=0.5, server_cpus=0.25), [16], "ray", 0.25, LAPTOP) == {}
    )
    assert size_to_cluster(trial_dict(cpus_per_actor=2), [1], "local", 0.25, LAPTOP) == {}
    with pytest.raises(ValueError, match=r"needs 4 CPUs and 0 GPUs \(one actor's share: 4 CPU\)"):
        size_to_cluster(trial_dict(cpus_per_actor=4), [1], "local", 0.25, LAPTOP)  # set by hand: never sized, refused
    assert size_to_cluster({}, [4], "local", 0.25, Cluster(1, 0, 1, 0)) == {}  # one actor's share: 1 CPU
    assert size_to_cluster({}, [4], "local", 0.25, Cluster(0.5, 0, 0.5, 0)) == {"cpus_per_actor": 0.5}


def test_settings_the_grid_gives_that_cannot_fit_are_refused_naming_them_and_the_cluster():
    with pytest.raises(ValueError) as refused:
        size_to_cluster(trial_dict(num_actors=4, cpus_per_actor=1), [4], "ray", 0.25, LAPTOP)
    assert str(refused.value) == (
        "resources: a trial of N=4 needs 5.25 CPUs and 0 GPUs (trial_cpus 0.25 + server_cpus 1 + 4 actors x 1 CPU)"
        ", and this cluster has 2 CPUs and 0 GPUs (at most 2 CPUs and 0 GPUs on one node) and cannot grow; lower "
        "ray.num_actors, compute.cpus_per_actor in the grid's trial: section, or leave them unset to have them sized"
    )
    with pytest.raises(
        ValueError, match=r"needs 2 CPUs and 1 GPUs .*1 actors x 0.875 CPU \+ 1 GPU.*lower compute.gpus_per_actor"
    ):
        size_to_cluster(trial_dict(gpus_per_actor=1), [4], "ray", 0.25, LAPTOP)  # GPUs are never sized away


def test_on_a_cluster_that_can_grow_it_says_once_what_it_waits_for():
    assert waiting_line({}, [2], "ray", 0.25, Cluster(64, 8, 16, 8)) is None
    line = waiting_line(trial_dict(gpus_per_actor=1, num_actors=32), [32], "ray", 0.25, Cluster(8, 0, 8, 0))
    assert line.startswith(
        "resources: a trial of N=32 needs 33.25 CPUs and 32 GPUs; the cluster has 8 CPUs and 0 "
        "GPUs now: waiting for its autoscaler"
    )


def test_server_resources_are_reserved_by_every_process_holding_params_and_checked_against_the_cluster():
    pinned = {
        "ray": {"server_shards": 2, "server_resources": {"server": 1}, "num_actors": 1},
        "compute": {"cpus_per_actor": 0.5},
    }
    # a sequencer and two shards: each shard asks 1 `server` beside its CPUs, the sequencer none
    from dana_ray.cluster.resources import custom_need
    from dana_ray.config import given_options

    by_name = given_options(pinned)
    assert custom_need(by_name, 4, "ray", 0.25) == {"server": 2.0}
    assert custom_need(dict(by_name, server_shards=1), 4, "ray", 0.25) == {"server": 1.0}
    servers = Cluster(cpus=8, gpus=0, node_cpus=4, node_gpus=0, custom={"server": 2})
    assert size_to_cluster(pinned, [4], "ray", 0.25, servers) == {}
    with pytest.raises(ValueError) as refused:
        size_to_cluster(pinned, [4], "ray", 0.25, Cluster(cpus=8, gpus=0, node_cpus=8, node_gpus=0))
    assert str(refused.value) == (
        "resources: a trial of N=4 reserves 2 server (ray.server_resources), and this cluster has 0 server and cannot "
        "grow; declare it on a node type (cluster.yaml: resources: {server: ...}) or leave ray.server_resources unset"
    )
    line = waiting_line(pinned, [4], "ray", 0.25, Cluster(8, 0, 8, 0))
    assert line.startswith(
        "resources: a trial of N=4 needs 3.75 CPUs, 2 server and 0 GPUs; the cluster has 8 CPUs and 0 GPUs now"
    )


@pytest.mark.parametrize(
    "value, message",
    [
        ({"CPU": 1}, "ray.server_resources: expected a custom resource name"),
        ({"server": 0}, r"ray.server_resources.server: expected a finite number > 0.0, got 0"),
        (["server"], "ray.server_resources: expected a mapping of custom resource names to amounts"),
    ],
)
def test_server_resources_refuse_builtin_names_and_amounts_that_are_not_positive(value, message):
    from dana_ray.config import TrialConfig

    with pytest.raises(ValueError, match=message):
        TrialConfig.from_dict({"ray": {"server_resources": value}})
