"""The networks of the paper's experiments, plus a small CNN for the embedded default data set.

* ``resnet20``: the CIFAR ResNet of He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016),
  Section 4.2: 3 stages of 3 basic blocks, 16/32/64 channels, option-A (parameter-free, zero-padded
  identity) shortcuts; 0.27M parameters.
* ``wrn`` / ``wrn-16-4``: the Wide ResNet of Zagoruyko and Komodakis, "Wide Residual Networks" (BMVC 2016):
  pre-activation basic blocks, (depth - 4) / 6 blocks per stage, widths 16k/32k/64k, 1x1 convolution
  shortcuts where the shape changes; options ``depth`` (default 16), ``width`` (default 4), ``dropout``.
  WRN-16-4 has 2.7M parameters.
* ``resnet50``: torchvision's ResNet-50 (He et al. 2016), randomly initialised; 25.6M parameters.
* ``cnn``: a small network with BatchNorm for the embedded 8x8 digits: quick on a laptop CPU, and it
  exercises the same BatchNorm path as the large models.

Every builder takes ``num_classes`` and ``in_channels`` plus its own options, declared with their defaults and
checks when it is registered, and may declare ``min_image_size``: its total stride, the smallest image side
whose last stage still sees a pixel of the image rather than padding alone. A model of one's own is one
function::

    @register_model("my-net", options={"width": Option(64, integer(1))}, min_image_size=4)
    def my_net(num_classes: int, in_channels: int, width: int = 64) -> nn.Module: ...

``check_model_input`` runs a model on the meta device (no memory, no arithmetic) with a data set's example
shape, so a model that cannot take the data is refused before anything launches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dana_ray.core.checks import integer, number
from dana_ray.core.cli import one_line
from dana_ray.core.registry import Option, Registry, resolve_options


@dataclass(frozen=True)
class ModelSpec:
    fn: Callable[..., nn.Module]  # fn(num_classes, in_channels, **options) -> module
    options: dict[str, Option]
    min_image_size: int = 1  # the total stride: smaller images leave the last stage only padding


#: Every model by the exact name configs use.
MODELS: Registry[ModelSpec] = Registry("model")


def register_model(name: str, options: dict[str, Option] | None = None, min_image_size: int = 1) -> Callable:
    """Decorator: register ``fn(num_classes, in_channels, **options) -> nn.Module`` as model ``name``, which
    takes images of side ``min_image_size`` or more."""

    def register(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODELS.register(name, ModelSpec(fn, dict(options or {}), min_image_size))
        return fn

    return register


# -- ResNet-20 (CIFAR) -------------------------------------------------------------------------------------


class _CifarBasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride, self.extra_channels = stride, planes - in_planes

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        # Option A: subsample spatially, zero-pad the new channels (no parameters).
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra_channels:
            half = self.extra_channels // 2
            x = F.pad(x, (0, 0, 0, 0, half, self.extra_channels - half))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self._shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs; n = 3 gives ResNet-20."""

    def __init__(self, blocks_per_stage: int = 3, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        layers, in_planes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            for b in range(blocks_per_stage):
                layers.append(_CifarBasicBlock(in_planes, planes, stride if b == 0 else 1))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(F.relu(self.bn(self.conv(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# -- Wide ResNet ---------------------------------------------------------------------------------------------


class _WideBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.dropout = dropout
        self.shortcut = (
            nn.Conv2d(in_planes, planes, 1, stride, 0, bias=False) if stride != 1 or in_planes != planes else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        out = self.conv1(pre)
        out = F.relu(self.bn2(out))
        if self.dropout:
            out = F.dropout(out, self.dropout, self.training)
        out = self.conv2(out)
        return out + (self.shortcut(pre) if self.shortcut is not None else x)


class WideResNet(nn.Module):
    """WRN-depth-width for 32x32 inputs (pre-activation)."""

    def __init__(
        self, depth: int = 16, width: int = 4, dropout: float = 0.0, num_classes: int = 10, in_channels: int = 3
    ) -> None:
        super().__init__()  # depth, width and dropout are checked by the "wrn" entry's Options
        n = (depth - 4) // 6
        self.conv = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        layers, in_planes = [], 16
        for planes, stride in ((16 * width, 1), (32 * width, 2), (64 * width, 2)):
            for b in range(n):
                layers.append(_WideBlock(in_planes, planes, stride if b == 0 else 1, dropout))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(in_planes)
        self.fc = nn.Linear(in_planes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.layers(self.conv(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# -- small CNN for the embedded digits ------------------------------------------------------------------------


class SmallCNN(nn.Module):
    """conv(32)-BN-ReLU, conv(64, stride 2)-BN-ReLU, global average pool, linear: ~20k parameters."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, channels: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, 2, 1, bias=False),
            nn.BatchNorm2d(2 * channels),
            nn.ReLU(),
        )
        self.fc = nn.Linear(2 * channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


def _wrn_depth(field: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 10 or (value - 4) % 6:
        raise ValueError(f"{field}: expected an integer 6n+4 >= 10 (10, 16, 22, 28, ...), got {value!r}")


_DROPOUT = Option(0.0, number(0.0, below=1.0), "dropout between a block's convolutions")


@register_model(
    "cnn", options={"channels": Option(32, integer(1), "channels of the first convolution")}, min_image_size=2
)
def _cnn(num_classes: int, in_channels: int, channels: int = 32) -> nn.Module:
    return SmallCNN(num_classes, in_channels, channels)


@register_model("resnet20", min_image_size=4)
def _resnet20(num_classes: int, in_channels: int) -> nn.Module:
    return CifarResNet(3, num_classes, in_channels)


@register_model(
    "wrn",
    options={"depth": Option(16, _wrn_depth), "width": Option(4, integer(1)), "dropout": _DROPOUT},
    min_image_size=4,
)
def _wrn(num_classes: int, in_channels: int, depth: int = 16, width: int = 4, dropout: float = 0.0) -> nn.Module:
    return WideResNet(depth, width, dropout, num_classes, in_channels)


@register_model("wrn-16-4", options={"dropout": _DROPOUT}, min_image_size=4)
def _wrn_16_4(num_classes: int, in_channels: int, dropout: float = 0.0) -> nn.Module:
    return WideResNet(16, 4, dropout, num_classes, in_channels)


@register_model("resnet50", min_image_size=32)
def _resnet50(num_classes: int, in_channels: int) -> nn.Module:
    import torchvision

    model = torchvision.models.resnet50(weights=None, num_classes=num_classes)
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    return model


def make_model(name: str, num_classes: int, in_channels: int = 3, **options) -> nn.Module:
    """Build the model registered as ``name`` (random initialisation from torch's global generator)."""
    spec = MODELS[name]
    return spec.fn(num_classes, in_channels, **resolve_options("model_options", name, options, spec.options))


def check_model(name: str, options: dict, num_classes: int, in_channels: int) -> None:
    """Build the model on the meta device (no memory, no initialisation cost): every error a builder raises
    for these options is raised now, before any trial starts."""
    with torch.device("meta"):
        try:
            make_model(name, num_classes, in_channels, **options)
        except ValueError:
            raise
        except Exception as error:  # the builder's own failure, for these options
            raise ValueError(
                f"model_options: model {name!r} cannot be built with {options!r} "
                f"({type(error).__name__}: {one_line(error)})"
            ) from None


_inputs_checked: set[str] = set()


def check_model_input(
    name: str, options: dict, num_classes: int, example: tuple[int, ...], batch_size: int, dataset: str
) -> None:
    """Raise a ValueError in one line unless model ``name`` takes ``dataset``'s examples of shape ``example``
    ([C, H, W] images or [F] features) in batches of ``batch_size`` and gives ``num_classes`` scores each:
    images at least the model's ``min_image_size`` on a side, then one training-mode forward pass on the
    meta device (shapes only: free even for ResNet-50, and it meets BatchNorm's need for more than one value
    per channel as training will). Each distinct question is answered once per process."""
    spec = MODELS[name]
    if len(example) == 3 and min(example[1:]) < spec.min_image_size:
        raise ValueError(
            f"model: {name!r} needs images of at least {spec.min_image_size}x{spec.min_image_size} "
            f"pixels (its total stride), and dataset {dataset!r} gives {example[1]}x{example[2]}; "
            f"choose a larger image_size or a smaller model"
        )
    batch = min(batch_size, 2)  # BatchNorm's question is whether batch * H * W > 1 at its layer
    key = repr((name, sorted(options.items(), key=str), num_classes, tuple(example), batch))
    if key in _inputs_checked:
        return
    with torch.device("meta"):
        model = make_model(name, num_classes, example[0], **options).train()
        try:
            out = model(torch.empty(batch, *example))
        except Exception as error:
            shape = "x".join(map(str, example))
            raise ValueError(
                f"model: {name!r} cannot take dataset {dataset!r}'s examples of shape [{shape}] in "
                f"batches of {batch_size} ({type(error).__name__}: {one_line(error)})"
            ) from None
    if tuple(out.shape) != (batch, num_classes):
        raise ValueError(
            f"model: {name!r} gives outputs of shape {list(out.shape)} for dataset {dataset!r}, "
            f"expected [batch, {num_classes}] (one score per class)"
        )
    _inputs_checked.add(key)
