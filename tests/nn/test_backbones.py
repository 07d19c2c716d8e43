"""Every backbone registered from garden.nn goes through the shared invariants (tests/invariants).

- Every registered name, at a tiny width: config round trip, symbolic == eager shapes and
  dtypes, and the feature-map API.
- Every code path (block type, pre/post-activation, shortcut, stem, head, ...), on a shallow
  tiny config of the family's class: additionally graph == eager, one training step with a
  gradient for every weight, .keras save/load, mixed precision and the head variants. The
  registered deep variants only repeat the same blocks, so they are not trained here.
"""

import importlib
import pkgutil

import numpy as np
import pytest

import garden.nn
from garden.nn.alexnet import AlexNet
from garden.nn.densenet import DenseNet
from garden.nn.resnet import ResNet
from garden.nn.vgg import VGG
from garden.nn.wide_resnet import WideResNet
from garden.registry import MODELS
from tests import invariants as inv

for _info in pkgutil.iter_modules(garden.nn.__path__, "garden.nn."):
    importlib.import_module(_info.name)

NN_BACKBONES = sorted(
    name for name in MODELS.names() if MODELS.get(name).__module__.startswith("garden.nn.")
)

CIFAR = (32, 32, 3)
# Registered name -> (tiny constructor arguments, input shape without batch).
TINY = {
    **{
        f"resnet{d}": (dict(width_multiplier=w, num_classes=3), CIFAR)
        for d, w in [(18, 0.125), (34, 0.125), (50, 0.0625), (101, 0.0625), (152, 0.0625)]
    },
    **{
        f"resnet{d}": (dict(width_multiplier=0.25, num_classes=3), CIFAR)
        for d in (20, 32, 44, 56, 110)
    },
    "resnet164": (dict(width_multiplier=0.25, num_classes=3), CIFAR),
    **{
        f"vgg{d}": (dict(width_multiplier=0.125, fc_width=16, num_classes=3), CIFAR)
        for d in (11, 13, 16, 19)
    },
    # The ImageNet layout needs >= 67 px (conv1 11x11/4, three 3x3/2 pools); 1-channel input.
    "alexnet_bn": (dict(width_multiplier=0.125, fc_width=16, num_classes=3), (67, 67, 1)),
    **{
        f"densenet{d}": (dict(width_multiplier=0.125, num_classes=3), CIFAR)
        for d in (121, 169, 201)
    },
    "densenet_bc100": (dict(width_multiplier=0.25, num_classes=3), CIFAR),
    "wide_resnet28_10": (dict(width_multiplier=0.05, num_classes=3), CIFAR),
}
# Backbones whose feature maps are not at ceil(H / stride) (unpadded convolutions).
INEXACT_STRIDES = {"alexnet_bn"}


def test_every_nn_backbone_has_a_tiny_config():
    assert set(NN_BACKBONES) == set(TINY)


# Deeper repetitions of the blocks of resnet101 / densenet121 (same code paths): their
# build alone costs seconds of a shared CPU, so they run with -m slow.
SLOW = {"resnet152", "densenet169", "densenet201"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(TINY)]
)
def test_registered_backbone(name):
    kwargs, shape = TINY[name]
    model = MODELS.get(name)(**kwargs)
    inv.check_symbolic_matches_eager(model, shape)
    inv.check_config_round_trip(model)
    inv.check_feature_info(model, shape, exact_strides=name not in INEXACT_STRIDES)


def _factory(cls, **kwargs):
    return lambda **extra: cls(**kwargs, **extra)


TINY_RESNET = dict(stage_widths=(4, 8, 16, 32), stem_width=4, num_classes=3)
# Case -> (factory of a shallow tiny model, input shape, check_backbone_api arguments).
CODE_PATHS = {
    "resnet_basic_postact": (
        _factory(ResNet, blocks_per_stage=(1, 2, 1, 1), block_type="basic", **TINY_RESNET),
        CIFAR,
        {},
    ),
    "resnet_bottleneck_os8_droppath": (
        _factory(
            ResNet,
            blocks_per_stage=(1, 1, 2, 1),
            output_stride=8,
            drop_path_rate=0.2,
            **TINY_RESNET,
        ),
        CIFAR,
        {},
    ),
    "resnet_cifar_preact_zero_pad": (
        _factory(
            ResNet,
            blocks_per_stage=(1, 2, 1),
            block_type="basic",
            stem="cifar",
            stem_width=4,
            stage_widths=(4, 8, 16),
            preact=True,
            shortcut="zero_pad",
            num_classes=3,
        ),
        CIFAR,
        {},
    ),
    "resnet_cifar_preact_bottleneck": (
        _factory(
            ResNet,
            blocks_per_stage=(1, 1, 1),
            stem="cifar",
            stem_width=4,
            stage_widths=(4, 8, 16),
            preact=True,
            num_classes=3,
        ),
        CIFAR,
        {},
    ),
    "wide_resnet_dropout": (
        _factory(WideResNet, depth=10, widen_factor=1, dropout=0.3, num_classes=3),
        CIFAR,
        {},
    ),
    "vgg_classic": (
        _factory(
            VGG,
            blocks_per_stage=(1, 1, 2, 2, 2),
            width_multiplier=0.125,
            fc_width=16,
            num_classes=3,
        ),
        CIFAR,
        {},
    ),
    "vgg_bn_gap_os8": (
        _factory(
            VGG,
            blocks_per_stage=(1, 1, 1, 1, 1),
            width_multiplier=0.125,
            batch_norm=True,
            head="gap",
            pool_size=3,
            output_stride=8,
            head_dropout=0.5,
            num_classes=3,
        ),
        CIFAR,
        {},
    ),
    "alexnet_bn_prelu": (
        _factory(AlexNet, width_multiplier=0.125, fc_width=16, num_classes=3),
        (67, 67, 1),
        {"exact_strides": False},
    ),
    "alexnet_small_inputs_relu": (
        _factory(
            AlexNet,
            width_multiplier=0.125,
            fc_width=16,
            small_inputs=True,
            grouped=False,
            activation="relu",
            batch_norm=False,
            num_classes=3,
        ),
        CIFAR,
        {},
    ),
    "densenet_imagenet_stem": (
        _factory(DenseNet, blocks_per_stage=(1, 2, 2, 1), growth_rate=4, num_classes=3),
        CIFAR,
        {},
    ),
    "densenet_cifar_dropout": (
        _factory(
            DenseNet,
            blocks_per_stage=(2, 2, 2),
            growth_rate=4,
            stem="cifar",
            dropout=0.2,
            num_classes=3,
        ),
        CIFAR,
        {},
    ),
}


@pytest.mark.parametrize("case", sorted(CODE_PATHS))
def test_code_path_invariants(case, tmp_path):
    factory, shape, backbone_kwargs = CODE_PATHS[case]
    inv.check_model_invariants(factory, shape, tmp_path, backbone_kwargs=backbone_kwargs)


@pytest.mark.parametrize("case", sorted(CODE_PATHS))
def test_code_path_exports_with_parity(case, tmp_path):
    """SavedModel and ONNX outputs equal the Keras model's, for every backbone code path."""
    factory, shape, _ = CODE_PATHS[case]
    x = np.random.default_rng(0).normal(size=(2, *shape)).astype("float32")
    inv.check_export_parity(factory(), x, tmp_path)
