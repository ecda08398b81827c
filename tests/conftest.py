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


def pytest_collection_modifyitems(config, items):
    """Tests marked ``ray_cli`` end with ``ray stop``, which stops every Ray process on the machine, and tests
    marked ``multinode`` start clusters of their own: run both before anything starts the session's shared
    instance (``ray_session``), the ``ray_cli`` ones first."""
    items.sort(key=lambda item: (item.get_closest_marker("ray_cli") is None, item.get_closest_marker("multinode") is None))


@pytest.fixture
def fake_cifar10(tmp_path):
    return make_fake_cifar(str(tmp_path / "cifar"), "cifar10")


@pytest.fixture
def fake_cifar100(tmp_path):
    return make_fake_cifar(str(tmp_path / "cifar100"), "cifar100")


@pytest.fixture
def fake_imagenet(tmp_path):
    return make_fake_imagefolder(str(tmp_path / "imagenet"))


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the whole test session: 2 CPUs, no dashboard, a small object store."""
    import ray
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2,
             log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
