"""CSN models and baselines: the shared invariants, the paper configurations' parameter counts,
masking semantics and the specialists' independence."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from garden.errors import ConfigError
from garden.methods.csn import models
from garden.methods.csn.models import ConditionalSimilarityNetwork, EmbeddingNet, SpecialistNetworks
from garden.registry import MODELS
from tests import invariants as inv

TINY_TRUNK = {"stages": [[4], [8]], "pooling": "avg", "hidden_units": []}
SHAPE = {"images": (16, 16, 3), "condition": ()}


def _inputs(batch=4, num_conditions=4, size=16, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    return {"images": rng.standard_normal((batch, size, size, channels)).astype(np.float32),
            "condition": (np.arange(batch) % num_conditions).astype(np.int32)}


def _loss(outputs):
    # Touches both outputs, so every weight (trunk, embedding, beta) gets a gradient.
    return tf.reduce_mean(tf.square(outputs["masked_embedding"])) + tf.reduce_mean(outputs["embedding"])


FACTORIES = {
    "csn_learned": lambda **kw: ConditionalSimilarityNetwork("conv", TINY_TRUNK, 8, 4, "learned", mask_seed=0, **kw),
    "csn_fixed": lambda **kw: ConditionalSimilarityNetwork("conv", TINY_TRUNK, 8, 4, "fixed", **kw),
    "triplet_net": lambda **kw: ConditionalSimilarityNetwork("conv", TINY_TRUNK, 8, 4, "none", **kw),
    "specialists": lambda **kw: SpecialistNetworks("conv", TINY_TRUNK, 8, 4, **kw),
}


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_invariants(name, tmp_path):
    factory = FACTORIES[name]
    model = factory()
    x = _inputs()
    inv.check_symbolic_matches_eager(model, SHAPE, batch_size=4, inputs=x)
    inv.check_config_round_trip(model)
    inv.check_graph_matches_eager(model, x)
    inv.check_train_step(model, x, _loss, require_nonzero=True)
    inv.check_keras_save_load(model, x, tmp_path)
    inv.check_mixed_precision(factory, x, via="argument")


def test_export_parity_of_a_bare_model(tmp_path):
    """Invariants 6-7 for the model alone (the task's serving export is in test_task.py)."""

    class ImagesOnly(keras.Model):  # the export helper serves one float input
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def call(self, images, training=False):
            condition = tf.zeros(tf.shape(images)[:1], tf.int32) + 1
            return self.inner({"images": images, "condition": condition}, training=training)

    model = ImagesOnly(FACTORIES["csn_learned"]())
    inv.check_export_parity(model, _inputs()["images"], tmp_path)


def test_masked_embedding_semantics():
    x = _inputs()
    learned = FACTORIES["csn_learned"]()
    out = learned(x)
    masks = np.maximum(learned.masks.beta.numpy(), 0)[x["condition"]]
    np.testing.assert_allclose(out["masked_embedding"], np.asarray(out["embedding"]) * masks, rtol=1e-6)
    fixed = FACTORIES["csn_fixed"]()
    out = fixed(x)
    assert np.all(np.asarray(out["masked_embedding"])[0, 2:] == 0)  # condition 0 keeps dims 0-1 of 8
    np.testing.assert_allclose(np.asarray(out["masked_embedding"])[0, :2], np.asarray(out["embedding"])[0, :2])
    plain = FACTORIES["triplet_net"]()
    out = plain(x)
    np.testing.assert_array_equal(out["masked_embedding"], out["embedding"])


def test_specialists_pick_their_net_and_learn_only_from_their_condition():
    model = FACTORIES["specialists"]()
    x = _inputs()
    out = model(x)
    for i, c in enumerate(x["condition"]):
        alone = model.nets[c](x["images"][i:i + 1])
        np.testing.assert_allclose(np.asarray(out["embedding"])[i], np.asarray(alone)[0], rtol=1e-5, atol=1e-6)
    only_zero = {"images": x["images"], "condition": np.zeros(4, np.int32)}
    with tf.GradientTape() as tape:
        loss = _loss(model(only_zero, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    for variable, grad in zip(model.trainable_variables, grads):
        touched = grad is not None and np.any(np.asarray(tf.convert_to_tensor(grad)))
        assert touched == ("specialist0" in variable.path), variable.path


# Trainable parameter counts of the paper configurations (Sec. 3.4.1; the thesis gives no counts,
# so they are derived here from the architecture):
# Zappos: torchvision's ResNet-18 has 11,689,512 parameters; without layer4 (8,393,728) and the fc
# (513,000) its trunk keeps 2,782,784; + the embedding layer 256x64 + 64 = 16,448; + masks 4x64.
ZAPPOS_TRUNK = 11_689_512 - 8_393_728 - 513_000
ZAPPOS = ZAPPOS_TRUNK + 256 * 64 + 64 + 4 * 64
# Fonts (our VGG-9 choice, see models.py): conv kernels 3x3 (no bias) + BN (gamma, beta) per layer,
# fc 4*4*512 -> 512, embedding 512 -> 64, masks 2x64.
FONTS_WIDTHS = [1, 64, 64, 128, 128, 256, 256, 256, 512, 512]
FONTS = (sum(9 * a * b + 2 * b for a, b in zip(FONTS_WIDTHS[:-1], FONTS_WIDTHS[1:]))
         + (4 * 4 * 512 * 512 + 512) + (512 * 64 + 64) + 2 * 64)


def test_paper_parameter_counts():
    assert ZAPPOS == 2_799_488 and FONTS == 9_504_256
    bn_zappos = 64 + 4 * 64 + (4 * 128 + 128) + (4 * 256 + 256)  # BN channels (moving mean + variance)
    inv.check_param_count(MODELS.get("csn_resnet18_zappos")(), ZAPPOS + 2 * bn_zappos,
                          {"images": (112, 112, 3), "condition": ()}, trainable=ZAPPOS)
    bn_fonts = sum(FONTS_WIDTHS[1:])
    inv.check_param_count(MODELS.get("csn_vgg9_fonts")(), FONTS + 2 * bn_fonts,
                          {"images": (64, 64, 1), "condition": ()}, trainable=FONTS)
    # The toyworld net: 4 conv stages 16-32-64-64, d = 64, 4 notions (≈ 65k, the spec's 50-200k).
    small = ConditionalSimilarityNetwork()
    counts = inv.check_param_count(small, None, {"images": (32, 32, 3), "condition": ()})
    widths = [3, 16, 32, 64, 64]
    expected = sum(9 * a * b + 2 * b for a, b in zip(widths[:-1], widths[1:])) + 64 * 64 + 64 + 4 * 64
    assert counts["trainable"] == expected == 65_104


def test_specialists_have_n_c_times_the_parameters():
    csn = ConditionalSimilarityNetwork(masks="none", num_conditions=3)
    spec = SpecialistNetworks(num_conditions=3)
    shape = {"images": (32, 32, 3), "condition": ()}
    assert inv.check_param_count(spec, None, shape)["trainable"] == 3 * inv.check_param_count(csn, None, shape)["trainable"]


@pytest.mark.parametrize("kwargs,match", [
    ({"trunk": "vgg"}, "unknown trunk 'vgg'; valid: conv, resnet"),
    ({"masks": "random"}, "unknown mask kind"),
    ({"embedding_dim": 0}, "embedding_dim must be >= 1"),
    ({"trunk_kwargs": {"stages": [[8]], "pooling": "max"}}, "unknown 'max'; valid: avg, flatten"),
])
def test_bad_arguments_fail_with_one_line(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ConditionalSimilarityNetwork(**kwargs)


def test_models_need_images_and_condition():
    with pytest.raises(ConfigError, match="'images' and 'condition'"):
        FACTORIES["csn_learned"]()(np.zeros((1, 16, 16, 3), np.float32))


def test_embedding_net_is_linear_on_the_trunk():
    net = EmbeddingNet("conv", TINY_TRUNK, 8)
    x = _inputs()["images"]
    g = net.trunk(x)
    np.testing.assert_allclose(net(x), np.asarray(g) @ net.project.kernel.numpy() + net.project.bias.numpy(),
                               rtol=1e-5, atol=1e-6)


def test_registered_names():
    for name in ("csn", "csn_specialists", "csn_resnet18_zappos", "csn_vgg9_fonts"):
        assert name in MODELS
    assert models.PAPER_EMBEDDING_DIM == 64
