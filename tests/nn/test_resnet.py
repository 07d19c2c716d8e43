"""ResNets: exact parameter counts of the paper configurations, block hooks, dense options."""

import inspect

import keras
import numpy as np
import pytest

from garden.nn import resnet
from garden.nn.resnet import ResNet, ZeroPadShortcut
from garden.registry import MODELS
from tests import invariants as inv

CIFAR = (32, 32, 3)
IMAGENET = (224, 224, 3)

# name -> (count_params() with BN moving statistics, trainable, the paper's rounded figure).
# CIFAR (10 classes): He et al. 2016a Table 6 (option-A shortcuts) and 2016b Table 2 (ResNet-164),
# counting trainable parameters. ImageNet (1000 classes): trainable = torchvision's counts;
# the total + keras.applications' redundant conv biases = keras.applications' count_params()
# (see KERAS_APPLICATIONS below).
PAPER_COUNTS = {
    "resnet20": (271_098, 269_722, "0.27M"),
    "resnet32": (466_426, 464_154, "0.46M"),
    "resnet44": (661_754, 658_586, "0.66M"),
    "resnet56": (857_082, 853_018, "0.85M"),
    "resnet110": (1_736_058, 1_727_962, "1.7M"),
    "resnet164": (1_727_482, 1_703_258, "1.7M"),
    "resnet18": (11_699_112, 11_689_512, "11.7M"),
    "resnet34": (21_814_696, 21_797_672, "21.8M"),
    "resnet50": (25_610_152, 25_557_032, "25.6M"),
    "resnet101": (44_654_504, 44_549_160, "44.5M"),
    "resnet152": (60_344_232, 60_192_808, "60.2M"),
}
SLOW_COUNTS = {"resnet152"}
# keras.applications: (count_params(), sum of its conv biases), measured with weights=None.
KERAS_APPLICATIONS = {
    "resnet50": ("ResNet50", 25_636_712, 26_560),
    "resnet101": ("ResNet101", 44_707_176, 52_672),
    "resnet152": ("ResNet152", 60_419_944, 75_712),
}


def _rounded(count, figure):
    digits = len(figure[:-1].split(".")[1]) if "." in figure else 0
    return f"{count / 1e6:.{digits}f}M"


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_COUNTS else n for n in PAPER_COUNTS],
)
def test_paper_parameter_counts(name):
    total, trainable, figure = PAPER_COUNTS[name]
    shape = IMAGENET if MODELS.get(name).fixed_arguments["stem"] == "imagenet" else CIFAR
    inv.check_param_count(MODELS.get(name)(), total, shape, trainable=trainable)
    assert _rounded(trainable, figure) == figure
    if name in KERAS_APPLICATIONS:
        _, keras_total, keras_conv_biases = KERAS_APPLICATIONS[name]
        assert total + keras_conv_biases == keras_total


def _conv_and_dense_shapes(model):
    shapes = []
    for w in model.weights:
        if len(w.shape) >= 2:  # conv kernels and dense kernels
            shapes.append(tuple(w.shape))
    return sorted(shapes)


@pytest.mark.parametrize(
    "name",
    [
        "resnet50",
        pytest.param("resnet101", marks=pytest.mark.slow),
        pytest.param("resnet152", marks=pytest.mark.slow),
    ],
)
def test_same_layers_as_keras_applications(name):
    """Same kernels as keras.applications' ResNet (v1 vs our v1.5 moves a stride, not a
    weight); the only difference in count_params() is their conv biases before BN."""
    cls_name, keras_total, keras_conv_biases = KERAS_APPLICATIONS[name]
    reference = getattr(keras.applications, cls_name)(weights=None)
    ours = MODELS.get(name)()
    ours.build((None,) + IMAGENET)
    assert _conv_and_dense_shapes(ours) == _conv_and_dense_shapes(reference)
    biases = sum(
        int(layer.bias.shape[0])
        for layer in reference.layers
        if isinstance(layer, keras.layers.Conv2D) and layer.use_bias
    )
    assert (reference.count_params(), biases) == (keras_total, keras_conv_biases)
    assert ours.count_params() + biases == reference.count_params()


def test_cifar_depths_and_options():
    assert resnet.cifar_blocks_per_stage(110) == (18, 18, 18)
    assert resnet.cifar_blocks_per_stage(164, "bottleneck") == (18, 18, 18)
    with pytest.raises(ValueError, match="6n\\+2"):
        resnet.cifar_blocks_per_stage(21)
    model = resnet.resnet56()
    assert model.preact and model.shortcut_type == "zero_pad" and model.num_classes == 10
    assert [len(stage) for stage in model.stages] == [9, 9, 9]
    # Projection (option B) shortcuts add the 1x1 convolutions 16->32 and 32->64.
    option_b = resnet.resnet20(shortcut="projection")
    inv.check_param_count(option_b, 271_098 + 16 * 32 + 32 * 64, CIFAR)


def test_variant_signature_and_fixed_arguments():
    signature = inspect.signature(MODELS.get("resnet20"))
    assert "blocks_per_stage" not in signature.parameters
    assert signature.parameters["num_classes"].default == 10
    assert inspect.signature(MODELS.get("resnet50")).parameters["num_classes"].default == 1000
    with pytest.raises(TypeError, match="fixed"):
        resnet.resnet20(blocks_per_stage=(1, 1, 1))
    with pytest.raises(ValueError, match="block_type"):
        ResNet(block_type="wide")
    with pytest.raises(ValueError, match="output_stride"):
        ResNet(output_stride=12)


@pytest.fixture(scope="module")
def tiny_cifar():
    model = resnet.resnet20(width_multiplier=0.25)
    x = inv.random_inputs(CIFAR, batch_size=2, seed=1)
    model(x)
    return model, x


def test_blocks_and_stages(tiny_cifar):
    model, _ = tiny_cifar
    assert len(model.blocks) == 9
    assert [len(s) for s in model.stages] == [3, 3, 3]
    assert [b.is_downsampling for b in model.blocks] == [
        False,
        False,
        False,
        True,
        False,
        False,
        True,
        False,
        False,
    ]
    assert isinstance(model.blocks[3].projection, ZeroPadShortcut)


def test_deleting_an_identity_block_is_identity(tiny_cifar):
    """Lesion study (seed 004, M4): a deleted pre-activation block is the identity, and a
    deleted downsampling block keeps its shortcut."""
    model, x = tiny_cifar
    h = model.forward_stem(x)
    np.testing.assert_array_equal(model.blocks[0].skip(h).numpy(), h.numpy())
    h = model.blocks[2](model.blocks[1](model.blocks[0](h)))
    expected = np.pad(h.numpy()[:, ::2, ::2, :], [(0, 0)] * 3 + [(0, 4)])
    np.testing.assert_array_equal(model.blocks[3].skip(h).numpy(), expected)


def test_forward_parts_and_block_fn(tiny_cifar):
    model, x = tiny_cifar
    h = model.forward_stem(x)
    block = model.blocks[3]
    shortcut, residual = block.forward_parts(h)
    np.testing.assert_allclose(
        block.combine(shortcut, residual).numpy(), block(h).numpy(), atol=1e-6
    )
    plain = model.forward_features(x)
    same = model.forward_features(x, block_fn=lambda i, b, h, training: b(h, training=training))
    np.testing.assert_allclose(same.numpy(), plain.numpy(), atol=1e-6)
    # Deleting every block leaves stem -> shortcuts -> final BN-ReLU.
    lesioned = model.forward_features(x, block_fn=lambda i, b, h, training: b.skip(h))
    expected = model.forward_stem(x)
    for b in model.blocks:
        expected = b.shortcut(expected)
    np.testing.assert_allclose(lesioned.numpy(), model.final_norm(expected).numpy(), atol=1e-5)


def test_post_activation_skip_applies_the_relu():
    model = resnet.resnet20(width_multiplier=0.25, preact=False, shortcut="projection")
    x = inv.random_inputs(CIFAR, batch_size=1)
    model(x)
    h = model.forward_stem(x)
    h = model.blocks[2](model.blocks[1](model.blocks[0](h)))
    block = model.blocks[3]
    expected = np.maximum(block.projection(h).numpy(), 0)
    np.testing.assert_allclose(block.skip(h).numpy(), expected, atol=1e-6)


def test_drop_path_schedule_and_inference():
    model = ResNet(
        blocks_per_stage=(2, 2),
        block_type="basic",
        stage_widths=(4, 8),
        stem="cifar",
        stem_width=4,
        drop_path_rate=0.4,
        num_classes=2,
    )
    assert [b.drop_path_rate for b in model.blocks] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    x = inv.random_inputs(CIFAR, batch_size=4)
    np.testing.assert_array_equal(model(x).numpy(), model(x).numpy())  # inference: no drop


def test_output_stride_dilates_instead_of_striding():
    model = resnet.resnet50(width_multiplier=0.0625, output_stride=8, include_top=False)
    assert [i["stride"] for i in model.feature_info] == [2, 4, 8, 8, 8]
    assert [i["key"] for i in model.feature_info] == ["C1", "C2", "C3", "C4", "C5"]
    stage3, stage4 = model.stages[2], model.stages[3]
    assert (stage3[0].strides, stage3[0].dilation_rate, stage3[1].dilation_rate) == (1, 1, 2)
    assert (stage4[0].dilation_rate, stage4[1].dilation_rate) == (2, 4)
    inv.check_feature_info(model, (64, 64, 3))
    assert tuple(model.compute_output_shape((None, 64, 64, 3))) == (None, 8, 8, 128)
    os16 = resnet.resnet18(width_multiplier=0.125, output_stride=16)
    assert [i["stride"] for i in os16.feature_info] == [2, 4, 8, 16, 16]


def test_mixed_precision_through_the_global_policy():
    x = inv.random_inputs(CIFAR)
    inv.check_mixed_precision(lambda: resnet.resnet20(width_multiplier=0.25), x, via="global")
