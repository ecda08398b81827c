from __future__ import annotations

import os

import pytest

from fakedata import make_fake_cifar, make_fake_imagefolder

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture
def cifar_checksums_off(monkeypatch):
    """Fake CIFAR files cannot match the real MD5 sums: check only that the files exist."""
    import torchvision.datasets.cifar as cifar

    monkeypatch.setattr(cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))


@pytest.fixture
def fake_cifar10(tmp_path, cifar_checksums_off):
    return make_fake_cifar(str(tmp_path / "cifar"), "cifar10")


@pytest.fixture
def fake_cifar100(tmp_path, cifar_checksums_off):
    return make_fake_cifar(str(tmp_path / "cifar100"), "cifar100")


@pytest.fixture
def fake_imagenet(tmp_path):
    return make_fake_imagefolder(str(tmp_path / "imagenet"))
