"""Models: the paper's parameter counts, shapes, and options."""

from __future__ import annotations

import pytest
import torch

from dana_ray.models import MODELS, make_model


def count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "name,classes,expected",
    [
        ("resnet20", 10, 269_722),  # He et al. 2016: 0.27M
        ("wrn-16-4", 10, 2_748_890),  # Zagoruyko & Komodakis 2016: 2.7M
        ("wrn-16-4", 100, 2_772_020),
        ("resnet50", 1000, 25_557_032),  # 25.6M
    ],
)
def test_parameter_counts_match_the_papers(name, classes, expected):
    assert count(make_model(name, classes)) == expected


@pytest.mark.parametrize(
    "name,shape", [("cnn", (1, 8, 8)), ("resnet20", (3, 32, 32)), ("wrn", (3, 32, 32)), ("resnet50", (3, 64, 64))]
)
def test_forward_shapes(name, shape):
    options = {"depth": 10, "width": 1} if name == "wrn" else {}
    model = make_model(name, 7, in_channels=shape[0], **options)
    assert model(torch.randn(2, *shape)).shape == (2, 7)


def test_wrn_options_are_depth_width():
    assert count(make_model("wrn", 10, depth=16, width=4)) == count(make_model("wrn-16-4", 10))
    with pytest.raises(ValueError, match=r"model_options.depth: expected an integer 6n\+4 >= 10"):
        make_model("wrn", 10, depth=15)


def test_every_model_has_batchnorm():
    for name in MODELS:
        model = make_model(name, 10)
        assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()), name


def test_unknown_model_and_option():
    with pytest.raises(ValueError, match="model: unknown name 'vgg'; allowed: cnn, resnet20, wrn, wrn-16-4, resnet50"):
        make_model("vgg", 10)
    with pytest.raises(ValueError, match="model_options: unknown option 'width' for 'resnet20'; allowed: none"):
        make_model("resnet20", 10, width=2)
