# my_model.py: a small MLP with BatchNorm (the master keeps its running statistics, as for any model).
from torch import nn

from dana_ray import Option, integer, register_model


@register_model("mlp", options={"hidden": Option(64, integer(1), "width of the hidden layers")})
def mlp(num_classes, in_channels, hidden=64):
    return nn.Sequential(
        nn.Linear(in_channels, hidden),
        nn.BatchNorm1d(hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.BatchNorm1d(hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )
