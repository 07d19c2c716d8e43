"""The lesion study's plain 15-layer VGG: parameter counts, shared invariants, export, deletion."""

import numpy as np
import pytest

from garden.errors import GardenError
from garden.methods.lesion import PlainVGG, plain_vgg15
from garden.registry import MODELS
from garden.tasks.classification import ClassificationTask
from tests import invariants as inv

CIFAR = (32, 32, 3)
FASHION = (28, 28, 1)


def _count(width, in_channels, num_classes, layers=15):
    """conv3x3 (no bias) + BN (4 per channel: gamma, beta, moving mean and variance) per layer,
    then the linear classifier."""
    convs = 9 * in_channels * width + (layers - 1) * 9 * width * width
    return convs + layers * 4 * width + width * num_classes + num_classes


def test_paper_configuration_parameter_count():
    """Thesis ch. 4: 15 layers, 128 channels each (CIFAR-10, 10 classes). The thesis gives no
    count; this is the arithmetic of the layout in plain_vgg.py: 2,076,810 with BN statistics,
    2,072,970 trainable."""
    model = MODELS.get("plain_vgg15")()
    assert _count(128, 3, 10) == 2_076_810
    inv.check_param_count(model, 2_076_810, CIFAR, trainable=2_076_810 - 15 * 2 * 128)
    assert len(model.blocks) == 15 and [len(s) for s in model.stages] == [5, 5, 5]


def test_cpu_configuration_parameter_count():
    """configs/lesion/vgg15_fashion_mnist.yaml: width 32 on 1-channel 28x28 images."""
    inv.check_param_count(plain_vgg15(width=32), _count(32, 1, 10), FASHION)
    assert _count(32, 1, 10) == 131_562


def test_invariants(tmp_path):
    inv.check_model_invariants(lambda **kw: plain_vgg15(width=8, **kw), FASHION, tmp_path)


def test_odd_input_sizes_keep_the_stride_contract():
    inv.check_feature_info(plain_vgg15(width=4), (27, 27, 3))


def test_export_parity_of_the_task(tmp_path):
    model = plain_vgg15(width=8)
    task = ClassificationTask(model, {"num_classes": 10, "image_shape": [28, 28, 1]}, mean=72.94, std=90.02)
    images = np.random.default_rng(0).integers(0, 256, (4, *FASHION)).astype(np.float32)
    task({"image": images})
    inv.check_export_parity(task, {"image": images}, tmp_path)


def test_deleting_a_layer_is_the_identity_and_the_first_layer_cannot_be_deleted():
    model = plain_vgg15(width=8)
    x = inv.random_inputs(FASHION, batch_size=2)
    model(x)
    assert [b.deletable for b in model.blocks] == [False] + [True] * 14
    with pytest.raises(GardenError, match="cannot delete layer 'stage1_conv1'"):
        model.blocks[0].skip(x)
    h = model.blocks[0](x)
    np.testing.assert_array_equal(model.blocks[1].skip(h).numpy(), h.numpy())


def test_block_fn_hook_matches_the_plain_call():
    model = plain_vgg15(width=8)
    x = inv.random_inputs(FASHION, batch_size=2)
    expected = model(x).numpy()
    features = model.forward_features(x, block_fn=lambda i, b, h, training: b(h, training=training))
    np.testing.assert_allclose(model.forward_head(features).numpy(), expected, atol=1e-6)


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(GardenError, match="layers_per_stage"):
        PlainVGG(layers_per_stage=())
    with pytest.raises(GardenError, match="width must be >= 1"):
        PlainVGG(width=0)
