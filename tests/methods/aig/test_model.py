"""AIGResNet: parameter counts of the thesis' networks, which blocks are gated, conditional
execution at inference equal to masking, inference modes, and the shared invariants."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from garden.errors import ConfigError
from garden.methods.aig.conditional import run_gated_block
from garden.methods.aig.model import AIGResNet, aig_resnet20, aig_resnet50, aig_resnet101, aig_resnet110
from tests import invariants as inv

CIFAR = (32, 32, 3)


def _gate_params(channels, hidden=16):
    """(trainable, non-trainable) of one gate: fc1 C*d + d, BN 2d (+2d moving), fc2 2d + 2."""
    return channels * hidden + hidden + 2 * hidden + 2 * hidden + 2, 2 * hidden


def _expected(base_total, base_trainable, gate_channels):
    trainable = sum(_gate_params(c)[0] for c in gate_channels)
    moving = sum(_gate_params(c)[1] for c in gate_channels)
    rate = len(gate_channels)  # the execution-rate average (Adanet*), one per gated block
    return base_total + trainable + moving + rate, base_trainable + trainable


@pytest.mark.parametrize(
    "factory, shape, base, gated",
    [
        # ResNet-110 (He et al. 2016a, option A): 1.7M (tests/nn/test_resnet.py); 54 blocks, the two
        # stage-entry blocks always run: 18 + 17 + 17 gates, on 16 / 32 / 64 input channels.
        (aig_resnet110, CIFAR, (1_736_058, 1_727_962), [16] * 18 + [32] * 17 + [64] * 17),
        # ResNet-50 (torchvision count 25,557,032): 16 blocks, 4 stage entries always run; the gates
        # see the block input: 256, 512, 1024, 2048 channels.
        (aig_resnet50, (224, 224, 3), (25_610_152, 25_557_032), [256] * 2 + [512] * 3 + [1024] * 5 + [2048] * 2),
        # ResNet-101: conv2_x and conv3_x (7 blocks) always run; conv4_x 22 + conv5_x 2 gated.
        pytest.param(aig_resnet101, (224, 224, 3), (44_654_504, 44_549_160), [1024] * 22 + [2048] * 2,
                     marks=pytest.mark.slow),
    ],
    ids=["adanet110", "adanet50", "adanet101"],
)
def test_thesis_parameter_counts(factory, shape, base, gated):
    model = factory()
    total, trainable = _expected(*base, gated)
    counts = inv.check_param_count(model, total, shape, trainable=trainable)
    assert len(model.gated_indices) == len(gated)
    overhead = counts["trainable"] / base[1] - 1
    # Thesis: +4.8% (CIFAR, Table 5.1: 1.78M vs 1.7M) and +3.9% (ImageNet); the gates as described
    # (C -> 16 -> 2) add less: ~2% on ResNet-110, <1% on ResNet-50/101 (spec M5 sec. 8).
    assert 0 < overhead < 0.05


def test_gated_blocks():
    assert aig_resnet110().gated_indices == [i for i in range(54) if i not in (18, 36)]
    assert aig_resnet50().gated_indices == [1, 2, 4, 5, 6, 8, 9, 10, 11, 12, 14, 15]
    model = aig_resnet101()
    assert model.gated_indices[0] == 8 and len(model.gated_indices) == 24 and 30 not in model.gated_indices
    assert len(aig_resnet50(gate_downsampling=True).gated_indices) == 16  # the thesis' "all 16"


def _tiny(**kw):
    return aig_resnet20(width_multiplier=0.25, **kw)


def test_model_invariants(tmp_path):
    model = _tiny()
    x = inv.random_inputs(CIFAR, batch_size=2, seed=1)
    out = inv.check_symbolic_matches_eager(model, CIFAR, inputs=x)
    assert set(out) == {"logits", "gates"} and tuple(out["gates"].shape) == (2, 9)
    inv.check_config_round_trip(model)
    inv.check_graph_matches_eager(model, x)
    y = np.array([1, 3])

    def loss_fn(outputs):
        ce = keras.losses.sparse_categorical_crossentropy(y, outputs["logits"], from_logits=True)
        return tf.reduce_mean(ce) + tf.reduce_sum(tf.square(tf.reduce_mean(outputs["gates"], 0) - 0.5))

    inv.check_train_step(model, x, loss_fn)
    inv.check_keras_save_load(model, x, tmp_path)
    inv.check_mixed_precision(_tiny, x, via="argument")


def _random_bn(model, rng):
    for w in model.weights:
        if any(k in w.path for k in ("moving_mean", "moving_variance", "gamma", "beta")):
            w.assign(rng.uniform(0.5, 1.5, w.shape).astype(np.float32))


@pytest.mark.parametrize(
    "factory, shape",
    [
        (lambda: aig_resnet20(width_multiplier=0.5), (16, 16, 3)),
        (lambda: aig_resnet20(width_multiplier=0.5, preact=True), (16, 16, 3)),
        (lambda: aig_resnet50(width_multiplier=0.125, num_classes=5), (48, 48, 3)),
    ],
    ids=["basic_postact", "basic_preact", "bottleneck"],
)
def test_conditional_execution_equals_masking(factory, shape):
    """At inference F runs on the executed rows only (or on none), with weights read outside the
    conds and BN folded: equal to shortcut + z * F(x) for every pattern."""
    model = factory()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, *shape)).astype(np.float32)
    model(x)
    _random_bn(model, rng)
    h = model.forward_stem(x)
    for block in model.blocks[:1]:
        h = block(h)
    block = model.blocks[1]
    shortcut, residual = block.forward_parts(h)
    relu_inputs = model._block_inputs_are_relu
    assert relu_inputs == (not model.preact)
    batch_of_one = tf.function(lambda b, t, e: run_gated_block(b, t, e, input_is_relu=relu_inputs))
    for pattern in ([1, 0, 1, 1, 0], [1] * 5, [0] * 5):
        z = np.array(pattern, np.float32)[:, None, None, None]
        expected = block.combine(shortcut, residual * z)
        execute = tf.constant(np.array(pattern, bool))
        for fn in (run_gated_block, tf.function(run_gated_block)):
            got = fn(block, h, execute, input_is_relu=relu_inputs)
            inv.assert_trees_close(got, expected, atol=2e-5, rtol=2e-5, what=f"pattern {pattern}")
        # A static batch of one takes the one-cond path, executed and skipped.
        for row in range(len(pattern)):
            got = batch_of_one(block, h[row:row + 1], execute[row:row + 1])
            inv.assert_trees_close(got, expected[row:row + 1], atol=2e-5, rtol=2e-5,
                                   what=f"pattern {pattern}, row {row} alone")


def test_skipped_blocks():
    """A skipped pre-activation block is the identity; a skipped post-activation one is ReLU(x)
    (released code: the ReLU follows the sum)."""
    rng = np.random.default_rng(1)
    for preact in (True, False):
        model = aig_resnet20(width_multiplier=0.25, preact=preact)
        x = rng.standard_normal((3, 8, 8, 3)).astype(np.float32)
        model(x)
        h = rng.standard_normal((3, 8, 8, model.blocks[1].out_channels)).astype(np.float32)
        got = run_gated_block(model.blocks[1], tf.constant(h), tf.zeros([3], tf.bool)).numpy()
        np.testing.assert_allclose(got, h if preact else np.maximum(h, 0))
    # A ReLU input (every block input of a post-activation network) passes through unchanged.
    relu_h = np.maximum(h, 0)
    for rows in (relu_h, relu_h[:1]):
        got = tf.function(run_gated_block)(model.blocks[1], tf.constant(rows), tf.zeros([len(rows)], tf.bool),
                                           input_is_relu=True)
        np.testing.assert_array_equal(got.numpy(), rows)


def test_inference_modes():
    model = _tiny()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, *CIFAR)).astype(np.float32)
    model(x)
    full = model(x)  # init: every gate opens (execute logit 2 > skip 0.1)
    assert np.all(full["gates"].numpy() == 1)
    model.inference_gates = "all"
    inv.assert_trees_close(model(x), full, atol=1e-5, rtol=1e-5)
    # Adanet* with every rate 1 equals all blocks.
    model.inference_gates = "all_scaled"
    model.execution_rate.assign(np.ones(len(model.gated_indices), np.float32))
    inv.assert_trees_close(model(x), full, atol=1e-5, rtol=1e-5)
    # Close a gate for good: the block is skipped for every image, and Adanet* with rate 0 agrees.
    gate = model.gates[0]
    gate.fc2.bias.assign(np.array([10.0, -10.0], np.float32))
    model.inference_gates = "deterministic"
    closed = model(x)
    first = model.gated_indices[0]
    assert np.all(closed["gates"].numpy()[:, first] == 0)
    model.inference_gates = "all_scaled"
    model.execution_rate.assign(np.where(np.arange(len(model.gated_indices)) == 0, 0.0, 1.0).astype(np.float32))
    np.testing.assert_allclose(model(x)["logits"].numpy(), closed["logits"].numpy(), atol=1e-4)
    # Sampling at inference (the released code's evaluation) still gives 0/1 decisions.
    model.inference_gates = "sample"
    sampled = model(x)["gates"].numpy()
    assert set(np.unique(sampled)) <= {0.0, 1.0}


def _mixed_gate_model(rng, **kw):
    """A small model with random BN statistics whose gates skip some blocks for some images."""
    model = _tiny(**kw)
    x = rng.standard_normal((6, *CIFAR)).astype(np.float32)
    model(x)
    _random_bn(model, rng)
    for gate in model.gates:
        gate.fc2.kernel.assign(rng.standard_normal(gate.fc2.kernel.shape).astype(np.float32) * 3)
        gate.fc2.bias.assign(np.zeros(2, np.float32))
    return model, x


@pytest.mark.parametrize("preact", [False, True], ids=["postact", "preact"])
def test_frozen_weights_equal_the_live_model(preact):
    """Inside frozen_weights (BN folded once, the serving form) every inference mode gives the
    live model's outputs, eager and traced; the gates decide alike."""
    model, x = _mixed_gate_model(np.random.default_rng(4), preact=preact)
    for mode in ("deterministic", "all"):
        model.inference_gates = mode
        live = model(x)
        with model.frozen_weights():
            frozen = model(x)
            traced = tf.function(lambda t: model(t))(tf.constant(x))
            # Traced for a batch of one (the batch-1 serving signature): one cond per block.
            one = tf.function(lambda t: model(t), input_signature=[tf.TensorSpec([1, *x.shape[1:]])])
            alone = [one(tf.constant(x[i:i + 1])) for i in range(len(x))]
        np.testing.assert_array_equal(frozen["gates"].numpy(), live["gates"].numpy())
        inv.assert_trees_close(frozen, live, atol=2e-5, rtol=2e-5, what=mode)
        inv.assert_trees_close(traced, live, atol=2e-5, rtol=2e-5, what=f"{mode}, traced")
        for i, row in enumerate(alone):
            inv.assert_trees_close(row, {k: v[i:i + 1] for k, v in live.items()}, atol=2e-5, rtol=2e-5,
                                   what=f"{mode}, image {i} alone")
    gated = live["gates"].numpy()  # mode "all" last: every block ran
    assert np.all(gated == 1)
    model.inference_gates = "deterministic"
    decided = model(x)["gates"].numpy()[:, model.gated_indices]
    assert 0 < decided.mean() < 1, "the test needs skipped and executed blocks"


def test_the_live_model_is_never_stale():
    """Outside frozen_weights the folding is part of every call: a graph traced before the
    weights change (training, load_weights) gives the new weights' outputs."""
    model, x = _mixed_gate_model(np.random.default_rng(5))
    live_fn = tf.function(lambda t: model(t)["logits"])
    before = live_fn(x).numpy()
    _random_bn(model, np.random.default_rng(6))
    after = model(x)["logits"].numpy()
    assert np.abs(after - before).max() > 1e-3
    np.testing.assert_allclose(live_fn(x).numpy(), after, atol=2e-5, rtol=2e-5)
    assert model._frozen is None


def test_frozen_weights_need_a_built_model():
    with pytest.raises(RuntimeError, match="built model"):
        with _tiny().frozen_weights():
            pass


def test_training_updates_the_running_rates():
    model = _tiny(rate_momentum=0.0)
    x = inv.random_inputs(CIFAR, batch_size=8)
    out = model(x, training=True)
    gates = out["gates"].numpy()[:, model.gated_indices]
    np.testing.assert_allclose(model.execution_rate.numpy(), gates.mean(axis=0), atol=1e-6)


def test_bad_arguments_fail_with_one_line():
    with pytest.raises(ConfigError, match="valid: all, all_scaled, deterministic, sample"):
        _tiny(inference_gates="random")
    with pytest.raises(ConfigError, match="temperature"):
        _tiny(temperature=0)
    with pytest.raises(ConfigError, match="ungated_blocks"):
        _tiny(ungated_blocks=10)
    with pytest.raises(ConfigError, match="no gated block"):
        _tiny(ungated_blocks=9)
    assert isinstance(_tiny(), AIGResNet)
