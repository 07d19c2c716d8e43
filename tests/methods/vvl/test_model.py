"""Visual-variation network: paper parameter counts, injections, stripping, shared invariants."""

import keras
import numpy as np
import pytest

from garden.errors import ConfigError
from garden.methods.vvl.model import VisualVariationNet, injection_keys
from garden.nn.alexnet import alexnet_bn
from garden.nn.resnet import resnet20
from garden.registry import MODELS
from tests import invariants as inv

IMAGENET = (224, 224, 3)
SMALL = (32, 32, 3)
TINY_ALEXNET = {"width_multiplier": 0.125, "fc_width": 16, "small_inputs": True}


def trainable(model) -> int:
    return inv.param_counts(model)["trainable"]


def tiny(**kwargs):
    defaults = dict(backbone_kwargs=TINY_ALEXNET, num_classes=4, variations={"pose": 6, "lighting": 3},
                    injections=[1, 2, 3, 4, 5], injection_hidden=8)
    return VisualVariationNet(**{**defaults, **kwargs})


# Seed 000 (specs/seeds_000_001.md): AlexNet-BN "10M" (A.2.1, 9,960,527 trainable with
# 15 classes); fc8-var 1024 x 30 + 30 = 30,750 ("31k", A.2.2); f_emb 1024 x 32 + 32 = 32,800
# ("33k", A.2.3); lighting 1024 x 5 + 5 = 5,125 (A.2.5).
def test_alexnet_paper_head_overheads():
    baseline = alexnet_bn(num_classes=15)
    inv.check_param_count(baseline, None, IMAGENET, trainable=9_960_527)
    pose = MODELS.get("vvl_alexnet")(num_classes=15, variations={"pose": 30})
    inv.check_param_count(pose, None, IMAGENET, trainable=9_960_527 + 30_750)
    embedding = MODELS.get("vvl_alexnet")(num_classes=15, embedding_dim=32)
    inv.check_param_count(embedding, None, IMAGENET, trainable=9_960_527 + 32_800)
    both = MODELS.get("vvl_alexnet")(num_classes=15, variations={"pose": 30, "lighting": 5})
    inv.check_param_count(both, None, IMAGENET, trainable=9_960_527 + 30_750 + 5_125)
    # The deployed model is the baseline, to the parameter (BN statistics included).
    for model in (pose, embedding, both):
        assert model.deployed_model().count_params() == baseline.count_params()


# A.2.4: ResNet-50 "0.26% (61k from 23M)" = 2048 x 30 + 30; DenseNet-121 "0.44% (30k from 7M)"
# = 1024 x 30 + 30; the trunks without the ImageNet fc are 23,508,032 and 6,953,856.
@pytest.mark.slow
@pytest.mark.parametrize("name, trunk, head", [("vvl_resnet50", 23_508_032, 61_470),
                                                ("vvl_densenet121", 6_953_856, 30_750)])
def test_resnet_densenet_pose_head_overheads(name, trunk, head):
    model = MODELS.get(name)(num_classes=15, variations={"pose": 30})
    features = model.backbone.num_features
    inv.check_param_count(model, None, IMAGENET, trainable=trunk + features * 15 + 15 + head)
    assert trainable(model) - trainable(model.deployed_model()) == head


def test_injection_points():
    assert injection_keys(alexnet_bn(num_classes=3)) == {1: "pool1", 2: "pool2", 3: "conv3", 4: "conv4"}
    cifar = [i["key"] for i in resnet20(num_classes=3).feature_info]
    assert len(cifar) == 3 and injection_keys(resnet20(num_classes=3)) == {2: cifar[0], 3: cifar[1], 4: cifar[2]}
    with pytest.raises(ConfigError, match=r"injection\(s\) \[1\]; available: \[2, 3, 4, 5\]"):
        VisualVariationNet(backbone="resnet20", num_classes=3, variations={"pose": 4}, injections=[1, 5])


def test_scores_are_the_equal_weighted_sum_of_injections():
    """A.2.2: y_var = sum_i gamma_i t_i with gamma_i = 1 / (number of active injections)."""
    model = tiny(variations={"pose": 6})
    x = inv.random_inputs(SMALL, 2)
    out = model(x, training=False)
    feats = model.backbone.features(x, training=False)
    fc7 = model.backbone.forward_head(feats["pool5"], pre_logits=True)
    taps = [feats[k] for k in ("pool1", "pool2", "conv3", "conv4")] + [fc7]
    expected = np.mean([head(t).numpy() for head, t in zip(model.variation_heads[0], taps)], axis=0)
    np.testing.assert_allclose(out["pose_logits"].numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(out["logits"].numpy(), model.backbone(x).numpy(), atol=1e-5)


def test_outputs_and_shapes():
    model = tiny(embedding_dim=5)
    out = model(inv.random_inputs(SMALL, 3), training=False)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "logits": (3, 4), "pose_logits": (3, 6), "lighting_logits": (3, 3), "embedding": (3, 5)}


def test_model_invariants(tmp_path):
    labels = np.array([0, 1])
    y = {"logits": labels, "pose_logits": labels, "lighting_logits": labels}
    model = inv.check_model_invariants(lambda **kw: tiny(**kw), SMALL, tmp_path, y=y)
    # Every head of every injection (inj_1..inj_4 with their hidden layers) gets a gradient.
    inv.check_train_step(model, inv.random_inputs(SMALL, 2), y, require_nonzero=True)


def test_resnet_backbone_with_all_injections(tmp_path):
    factory = lambda **kw: VisualVariationNet(backbone="resnet20", backbone_kwargs={"width_multiplier": 0.25},  # noqa: E731
                                              num_classes=3, variations={"pose": 4}, injections=[2, 3, 4, 5],
                                              injection_pooling="average", **kw)
    labels = np.array([0, 1])
    inv.check_model_invariants(factory, SMALL, tmp_path, y={"logits": labels, "pose_logits": labels},
                               mixed_precision=False)


@pytest.mark.parametrize("kwargs, message", [
    ({"injections": [0, 5]}, "model.injections"),
    ({"injections": [6]}, "model.injections"),
    ({"variations": {"pose": 1}}, "model.variations.pose"),
    ({"variations": {"logits": 3}}, "reserved"),
    ({"injection_pooling": "max"}, "model.injection_pooling"),
    ({"backbone": "alexnet_bm"}, "alexnet_bn"),
    ({"backbone_kwargs": {"num_classes": 3}}, "model.num_classes"),
])
def test_bad_arguments_fail_in_one_line(kwargs, message):
    with pytest.raises(ConfigError, match=message) as error:
        VisualVariationNet(**{"backbone_kwargs": TINY_ALEXNET, "num_classes": 3, "variations": {"pose": 4}, **kwargs})
    assert "\n" not in str(error.value)


def test_registered_variants_fix_the_backbone():
    model = MODELS.get("vvl_alexnet")(backbone_kwargs=TINY_ALEXNET, num_classes=3)
    assert model.backbone_name == "alexnet_bn" and isinstance(model, VisualVariationNet)
    with pytest.raises(TypeError):
        MODELS.get("vvl_alexnet")(backbone="resnet50")
    assert isinstance(keras.saving.get_registered_object("garden>VisualVariationNet"), type)
