"""Every backbone registered from garden.nn goes through the shared invariants at tiny sizes."""

import importlib
import pkgutil

import numpy as np
import pytest

import garden.nn
from garden.registry import MODELS
from tests import invariants as inv

for _info in pkgutil.iter_modules(garden.nn.__path__, "garden.nn."):
    importlib.import_module(_info.name)

NN_BACKBONES = sorted(
    name for name in MODELS.names() if MODELS.get(name).__module__.startswith("garden.nn.")
)

CIFAR = (32, 32, 3)
# name -> (tiny constructor arguments, input shape without batch)
TINY = {
    **{
        f"resnet{d}": (dict(width_multiplier=w, num_classes=3), CIFAR)
        for d, w in [(18, 0.125), (34, 0.125), (50, 0.0625), (101, 0.0625), (152, 0.0625)]
    },
    **{f"resnet{d}": (dict(width_multiplier=0.25, num_classes=3), CIFAR) for d in (20, 32, 44, 56, 110)},
    "resnet164": (dict(width_multiplier=0.25, num_classes=3), CIFAR),
    **{f"vgg{d}": (dict(width_multiplier=0.125, fc_width=16, num_classes=3), CIFAR) for d in (11, 13, 16, 19)},
    # The ImageNet layout needs >= 67 px (conv1 11x11/4, three 3x3/2 pools); 1 channel input.
    "alexnet_bn": (dict(width_multiplier=0.125, fc_width=16, num_classes=3), (67, 67, 1)),
    **{f"densenet{d}": (dict(width_multiplier=0.125, num_classes=3), CIFAR) for d in (121, 169, 201)},
    "densenet_bc100": (dict(width_multiplier=0.25, num_classes=3), CIFAR),
    "wide_resnet28_10": (dict(width_multiplier=0.05, dropout=0.3, num_classes=3), CIFAR),
}
# Backbones whose feature maps are not at ceil(H / stride) (unpadded convolutions).
INEXACT_STRIDES = {"alexnet_bn"}


def test_every_nn_backbone_has_a_tiny_config():
    assert set(NN_BACKBONES) == set(TINY)


def _tiny(name, **extra):
    kwargs, shape = TINY[name]
    return MODELS.get(name)(**kwargs, **extra), shape


@pytest.mark.parametrize("name", sorted(TINY))
def test_invariants(name, tmp_path):
    model, shape = _tiny(name)
    x = inv.random_inputs(shape, batch_size=2)
    y = np.array([0, 2])
    inv.check_symbolic_matches_eager(model, shape, inputs=x)
    inv.check_config_round_trip(model)
    inv.check_backbone_api(model, x, exact_strides=name not in INEXACT_STRIDES)
    inv.check_train_step(model, x, y)
    inv.check_keras_save_load(model, x, tmp_path)


@pytest.mark.parametrize("name", sorted(TINY))
def test_mixed_precision(name):
    kwargs, shape = TINY[name]
    x = inv.random_inputs(shape, batch_size=2)
    inv.check_mixed_precision(lambda **kw: MODELS.get(name)(**kwargs, **kw), x, via="argument")
