"""GUNN / SUNN: parameter counts, update semantics, Algorithm 2's gradients and BN statistics,
the shared invariants and export parity."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from garden.errors import ConfigError
from garden.methods.gunn.layers import GradualUpdate, UpdateBatchNorm
from garden.methods.gunn.models import GUNNNet
from garden.registry import MODELS
from garden.tasks.classification import ClassificationTask
from tests import invariants as inv

CIFAR = (32, 32, 3)
IMAGENET = (224, 224, 3)
SMALL = (8, 8, 3)

# Trainable parameters (BN scales/offsets and the classifier bias included, conv biases absent),
# thesis Sec. 4.5 / spec A2.6; the C100 figures differ by the classifier (90 x (N + 1)).
PAPER_COUNTS = {
    ("gunn15", 10): 1_585_746,
    ("gunn15", 100): 1_618_236,
    ("sunn15", 10): 1_585_746,
    ("gunn15_nores", 10): 1_585_746,
    ("gunn24", 10): 29_534_106,
    ("gunn24", 100): 29_631_396,
    ("gunn18", 1000): 28_909_736,
    ("sunn18", 1000): 28_909_736,
    ("wide_gunn18", 1000): 45_624_936,
}
DEFAULT_COUNTS = {("gunn15", 10)}  # building creates ~1,500 variables per GUNN-15: the rest is slow


def tiny(**kwargs):
    """A two-stage GUNN small enough for eager tests: 12 and 16 channels, 3 and 4 segments."""
    args = dict(num_classes=3, stem_width=4, widths=(12, 16), segments=(3, 4), expansion=2, final_width=8)
    args.update(kwargs)
    return GUNNNet(**args)


def one_stage(**kwargs):
    """One GUNN layer of 6 channels in 3 segments: the smallest network, for the export tests."""
    return tiny(**{"widths": (6,), "segments": (3,), "final_width": 0, **kwargs})


@pytest.mark.parametrize(
    "name,classes",
    [pytest.param(*key, marks=() if key in DEFAULT_COUNTS else pytest.mark.slow) for key in PAPER_COUNTS],
    ids=[f"{n}-{c}" for n, c in PAPER_COUNTS],
)
def test_paper_parameter_counts(name, classes):
    model = MODELS.get(name)(num_classes=classes)
    shape = IMAGENET if model.stem_type == "imagenet" else CIFAR
    model.build((None, *shape))
    assert inv.param_counts(model)["trainable"] == PAPER_COUNTS[(name, classes)]


def test_gunn_sunn_nores_share_parameters_and_transition_order_is_free():
    counts = set()
    for kwargs in ({}, {"mode": "sunn"}, {"residual": False}, {"transition_order": "pool_conv"}):
        model = tiny(**kwargs)
        model.build((None, *SMALL))
        counts.add(model.count_params())
    assert len(counts) == 1, counts


def _layer(mode="gunn", residual=True, num_bottlenecks=1, backprop="autodiff", projection=True, channels=12,
           segments=3, seed=0):
    keras.utils.set_random_seed(seed)
    layer = GradualUpdate(channels, segments, num_bottlenecks=num_bottlenecks, projection=projection, mode=mode,
                          residual=residual, backprop=backprop)
    x = tf.constant(np.random.default_rng(seed + 1).standard_normal((2, 5, 5, channels)).astype("float32"))
    layer(x)
    return layer, x


@pytest.mark.parametrize("residual", [True, False])
def test_gunn_updates_segments_in_order(residual):
    """out_i = [x_i +] G_i(concat(out_1..out_{i-1}, x_i..x_P)) (Eq. 4.4, 4.5), segment by segment."""
    layer, x = _layer(residual=residual)
    y = layer(x, training=False).numpy()
    state = x.numpy().copy()
    for i, unit in enumerate(layer.units):
        lo, hi = 4 * i, 4 * (i + 1)
        delta = unit(tf.constant(state), training=False).numpy()
        state[..., lo:hi] = (state[..., lo:hi] if residual else 0) + delta
    np.testing.assert_allclose(y, state, atol=1e-5)


def test_sunn_reads_only_the_input_and_differs_from_gunn():
    gunn, x = _layer(mode="gunn")
    sunn = GradualUpdate.from_config({**gunn.get_config(), "mode": "sunn"})
    sunn(x)
    sunn.set_weights(gunn.get_weights())
    y_sunn, y_gunn = sunn(x).numpy(), gunn(x).numpy()
    expected = np.concatenate([x.numpy()[..., 4 * i:4 * i + 4] + u(x).numpy() for i, u in enumerate(sunn.units)], -1)
    np.testing.assert_allclose(y_sunn, expected, atol=1e-5)
    # The first segment reads x in both; the later ones read updated channels only in GUNN.
    np.testing.assert_allclose(y_gunn[..., :4], y_sunn[..., :4], atol=1e-6)
    assert np.max(np.abs(y_gunn[..., 4:] - y_sunn[..., 4:])) > 1e-3


def _gradients(layer, x, graph):
    weights = tf.constant(np.random.default_rng(7).standard_normal(x.shape).astype("float32"))

    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_mean(layer(x, training=True) * weights)
        return tape.gradient(loss, [x] + layer.trainable_variables)

    grads = (tf.function(step) if graph else step)(x)
    return [g.numpy() for g in grads], [v.numpy() for v in layer.non_trainable_variables]


@pytest.mark.parametrize("backprop", ["recompute", "reconstruct"])
@pytest.mark.parametrize("graph,num_bottlenecks,residual,projection", [
    (True, 1, True, True), (True, 1, False, True), (False, 2, True, True), (False, 1, True, False),
], ids=["graph", "graph-nores", "eager-M2", "eager-noproj"])
def test_memory_saving_gradients_equal_autodiff(backprop, graph, num_bottlenecks, residual, projection):
    """Algorithm 2 (recompute) and its reconstruct-only form give autodiff's gradients for the
    input and every trainable weight, and the same moving statistics after the step."""
    kwargs = dict(num_bottlenecks=num_bottlenecks, residual=residual, projection=projection)
    plain, x = _layer(backprop="autodiff", **kwargs)
    recompute, _ = _layer(backprop=backprop, **kwargs)
    expected, stats_expected = _gradients(plain, x, graph)
    actual, stats_actual = _gradients(recompute, x, graph)
    assert len(actual) == len(expected) == 1 + len(plain.trainable_variables)
    names = ["input"] + [v.path for v in plain.trainable_variables]
    for name, a, e in zip(names, actual, expected):
        np.testing.assert_allclose(a, e, atol=1e-5, rtol=1e-4, err_msg=name)
    assert any(np.any(g) for g in actual[1:])
    for a, e in zip(stats_actual, stats_expected):
        np.testing.assert_allclose(a, e, atol=1e-6)


@pytest.mark.parametrize("update_stats", [True, False])
def test_fused_update_batch_norm_matches_keras(update_stats):
    """The fused training call normalises as Keras' BatchNormalization does and moves the
    moving statistics the same way (biased batch variance), or leaves them alone."""
    x = tf.constant(np.random.default_rng(3).normal(2.0, 3.0, (4, 5, 5, 6)).astype("float32"))
    fused, reference = UpdateBatchNorm(), keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)
    for layer in (fused, reference):
        layer.build(x.shape)
        layer.set_weights([np.linspace(0.5, 2.0, 6, dtype="float32"), np.linspace(-1.0, 1.0, 6, dtype="float32"),
                           np.full(6, 0.3, "float32"), np.full(6, 1.5, "float32")])
    np.testing.assert_allclose(fused(x, training=True, update_stats=update_stats), reference(x, training=True),
                               atol=1e-5)
    expected = reference.get_weights() if update_stats else [np.full(6, 0.3), np.full(6, 1.5)]
    np.testing.assert_allclose(fused.moving_mean, expected[-2], atol=1e-6)
    np.testing.assert_allclose(fused.moving_variance, expected[-1], rtol=1e-6)
    if update_stats:  # then inference reads the same moving statistics
        np.testing.assert_allclose(fused(x, training=False), reference(x, training=False), atol=1e-5)


def test_update_batch_norm_rejects_non_nhwc_inputs():
    with pytest.raises(ConfigError, match="last axis of NHWC"):
        UpdateBatchNorm().build((2, 6))


@pytest.mark.parametrize("backprop", ["recompute", "reconstruct", "autodiff"])
def test_bn_moving_statistics_update_once_per_step(backprop):
    """One training step moves every moving mean m -> 0.9 m + 0.1 batch_mean once: checked on
    the first BN of unit 0, whose input is conv(x) of the layer's own input (spec A8: a
    recomputation that re-ran BN in training mode would apply the momentum twice)."""
    layer, x = _layer(backprop=backprop)
    bn = layer.units[0].norms[0]
    assert isinstance(bn, UpdateBatchNorm) and bn.momentum == pytest.approx(0.9)
    start_mean = np.full(bn.moving_mean.shape, 0.5, np.float32)
    start_var = np.full(bn.moving_variance.shape, 2.0, np.float32)
    bn.moving_mean.assign(start_mean)
    bn.moving_variance.assign(start_var)
    pre = layer.units[0].convs[0](x).numpy()
    batch_mean, batch_var = pre.mean(axis=(0, 1, 2)), pre.var(axis=(0, 1, 2))
    _gradients(layer, x, graph=True)
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.9 * start_mean + 0.1 * batch_mean, atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), 0.9 * start_var + 0.1 * batch_var, atol=1e-4)


@pytest.mark.parametrize("backprop", ["recompute", "reconstruct"])
def test_memory_saving_backprop_trains_under_mixed_precision(backprop):
    previous = keras.config.dtype_policy()
    try:
        keras.config.set_dtype_policy("mixed_float16")
        model = tiny(backprop=backprop)
        x = inv.random_inputs(SMALL, batch_size=2)
        inv.check_train_step(model, x, np.arange(2))
    finally:
        keras.config.set_dtype_policy(previous)


@pytest.mark.parametrize("mode", ["gunn", "sunn"])
def test_model_invariants(mode, tmp_path):
    factory = tiny if mode == "gunn" else one_stage  # the two-stage network once is enough
    inv.check_model_invariants(lambda **kw: factory(mode=mode, **kw), SMALL, tmp_path)


def test_imagenet_stem_and_strides():
    model = tiny(stem="imagenet", final_width=0, projection=False, transition_order="pool_conv")
    assert [i["stride"] for i in model.feature_info] == [4, 8]
    inv.check_feature_info(model, (32, 32, 3))


def test_task_fits_and_exports_with_parity(tmp_path):
    """The classification task trains GUNN (the default reconstruct backprop's custom gradient
    inside Keras' fit, graph mode), and the GUNN and SUNN tasks export to SavedModel and ONNX
    with parity through the export stage; also GUNN-24's update units (K = 3, M = 2)."""
    images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3)).astype("float32")
    info = {"num_classes": 3, "image_shape": [8, 8, 3]}
    variants = {"gunn": {"mode": "gunn"}, "sunn": {"mode": "sunn"},
                "gunn_k3_m2": {"mode": "gunn", "expansion": 3, "num_bottlenecks": 2}}
    for name, kwargs in variants.items():
        task = ClassificationTask(one_stage(**kwargs), info)
        task({"image": images})
        inv.check_fit_step(task, {"image": images}, {"label": np.array([0, 1, 2, 0])})
        manifest = inv.check_export_parity(task, {"image": images}, tmp_path / name)
        assert set(manifest["parity"]) >= {"saved_model", "onnx"}


@pytest.mark.parametrize("kwargs,match", [
    ({"segments": (5, 4)}, "divide the width 12"),
    ({"mode": "gun"}, "did you mean 'gunn'"),
    ({"backprop": "checkpoint"}, "valid: autodiff, recompute, reconstruct"),
    ({"widths": (12,)}, "one length"),
    ({"transition_order": "pool"}, "valid: conv_pool, pool_conv"),
])
def test_bad_arguments_give_one_line_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match) as error:
        tiny(**kwargs)
    assert "\n" not in str(error.value)


def test_overlap_singularity_toy():
    """Sec. 4.4: collapsed neurons stay collapsed in plain and residual layers under gradient
    descent, and the gradual update separates them."""
    from garden.methods.gunn.singularity import train

    gaps = {form: max(train(form, steps=25)["gap_rms"]) for form in ("plain", "residual", "gunn")}
    assert gaps["plain"] == 0.0
    assert gaps["residual"] < 1e-5
    assert gaps["gunn"] > 1e-2, gaps
