"""Fixtures shared by the tests: small data sets in the real on-disk formats, and one Ray instance shared by the
tests that need Ray.

Tests that start Ray are marked ``ray`` (a test that uses ``ray_session``, or is marked ``ray_cli`` or
``multinode``, is marked here), so the fast tier, ``python -m pytest -m "not slow and not ray"``, leaves them
out. The order of tests does not matter: the shared instance is started by the first test that asks for it,
stopped before a test that must have the machine to itself (``ray_cli``: it ends with ``ray stop``;
``multinode``: it starts clusters of its own), and started again by the next test that asks for it.
"""

from __future__ import annotations

import os
import secrets

import pytest
from fakedata import make_fake_cifar, make_fake_imagefolder

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Token authentication on, as on clusters, with a throwaway token for this test session (nothing is written to
# ~/.ray). Set before anything imports Ray, which reads them once; Ray's processes inherit them.
os.environ["RAY_AUTH_MODE"] = "token"
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))

#: Markers of tests that run Ray on a machine of their own (no shared instance beside them).
OWN_RAY = ("ray_cli", "multinode")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "ray_session" in getattr(item, "fixturenames", ()) or any(item.get_closest_marker(m) for m in OWN_RAY):
            item.add_marker(pytest.mark.ray)


class SharedRay:
    """The session's one local Ray instance: 2 CPUs, no dashboard, a small object store."""

    def __init__(self) -> None:
        self.up = False

    def start(self) -> None:
        import ray

        if not self.up:
            ray.init(
                address="local",
                num_cpus=2,
                include_dashboard=False,
                object_store_memory=200 * 1024**2,
                log_to_driver=False,
            )
            self.up = True

    def stop(self) -> None:
        import ray

        if self.up:
            ray.shutdown()
            self.up = False


@pytest.fixture(scope="session")
def shared_ray():
    shared = SharedRay()
    try:
        yield shared
    finally:
        shared.stop()


@pytest.fixture
def ray_session(shared_ray):
    """The shared Ray instance, started if it is not running."""
    import ray

    shared_ray.start()
    return ray


@pytest.fixture(autouse=True)
def _own_ray(request, shared_ray):
    """A test that runs Ray on its own has the machine to itself: the shared instance is stopped first."""
    if any(request.node.get_closest_marker(m) for m in OWN_RAY):
        shared_ray.stop()


@pytest.fixture
def notes():
    """dana_ray's logged notes shown on stderr as ``note: ...`` lines, as a command line shows them."""
    from dana_ray.core.cli import show_notes

    with show_notes():
        yield


@pytest.fixture
def fake_cifar10(tmp_path):
    return make_fake_cifar(str(tmp_path / "cifar"), "cifar10")


@pytest.fixture
def fake_cifar100(tmp_path):
    return make_fake_cifar(str(tmp_path / "cifar100"), "cifar100")


@pytest.fixture
def fake_imagenet(tmp_path):
    return make_fake_imagefolder(str(tmp_path / "imagenet"))
