"""The ConvNet-AIG gate: hard 0/1 forward, straight-through gradient, Gumbel-max statistics,
the released code's 87% opening at init (spec M5, sec. 7 "Unit tests")."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from garden.errors import ConfigError
from garden.methods.aig.gate import INIT_BIAS, Gate, gumbel_straight_through
from tests import invariants as inv


def test_straight_through_is_hard_forward_and_soft_backward():
    logits = tf.Variable(np.random.default_rng(0).standard_normal((256, 2)).astype(np.float32))
    with tf.GradientTape() as tape:
        z = gumbel_straight_through(logits, 1.0, keras.random.SeedGenerator(1))
        loss = tf.reduce_sum(z * tf.range(256, dtype=tf.float32))
    values = z.numpy()
    assert set(np.unique(values)) <= {0.0, 1.0} and 0 < values.sum() < 256
    grad = tape.gradient(loss, logits).numpy()
    assert np.all(np.isfinite(grad)) and np.abs(grad).sum() > 0
    # The soft sample's gradient: d softmax_1 / d logit_1 = p (1 - p) >= 0, and the opposite for logit_0,
    # up to float32 rounding of gradients as large as the loss weights (up to 255).
    assert np.all(grad[:, 1] >= 0) and np.allclose(grad[:, 0], -grad[:, 1], atol=1e-6 * np.abs(grad).max())


def test_gumbel_max_samples_from_the_softmax():
    """Eq. 5.6: argmax(log alpha + G) is a sample of softmax(log alpha); 20k draws per row."""
    probabilities = np.array([0.05, 0.3, 0.5, 0.87, 0.97])
    logit_execute = np.log(probabilities / (1 - probabilities))
    n = 20_000
    logits = np.stack([np.zeros_like(logit_execute), logit_execute], axis=1)
    logits = np.repeat(logits, n, axis=0).astype(np.float32)
    z = gumbel_straight_through(tf.constant(logits), 1.0, keras.random.SeedGenerator(3)).numpy()
    freq = z.reshape(len(probabilities), n).mean(axis=1)
    std = np.sqrt(probabilities * (1 - probabilities) / n)
    assert np.all(np.abs(freq - probabilities) < 5 * std), (freq, probabilities)


def test_init_opens_about_85_percent():
    """Released code: last-layer bias (skip 0.1, execute 2) -> P(execute) = 0.870 (thesis: ~85%)."""
    gate = Gate()
    x = np.random.default_rng(0).standard_normal((512, 8, 8, 16)).astype(np.float32)
    logits = gate(x, training=False).numpy()
    p = Gate.execute_probability(logits).numpy()
    assert np.allclose(p, 1 / (1 + np.exp(INIT_BIAS[0] - INIT_BIAS[1])), atol=0.01)
    assert abs(p.mean() - 0.870) < 0.01
    # All deterministic decisions are "execute" at init; the sampled ones open ~87% of the time.
    assert np.all(Gate.decide(logits).numpy() == 1.0)
    z = gumbel_straight_through(logits, 1.0, keras.random.SeedGenerator(0)).numpy()
    assert abs(z.mean() - 0.87) < 0.05


def test_fast_decision_matches_the_layers():
    gate = Gate(hidden=16)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((64, 4, 4, 8)).astype(np.float32)
    gate(x)
    gate.fc2.kernel.assign(rng.standard_normal((16, 2)).astype(np.float32))
    gate.fc2.bias.assign(np.zeros(2, np.float32))
    gate.norm.moving_mean.assign(rng.uniform(-1, 1, 16).astype(np.float32))
    gate.norm.moving_variance.assign(rng.uniform(0.5, 2, 16).astype(np.float32))
    decided = Gate.decide(gate(x, training=False)).numpy() > 0.5
    assert 0 < decided.sum() < 64
    np.testing.assert_array_equal(gate.fast_decision(tf.constant(x)).numpy(), decided)
    folded = [t.numpy() for t in gate.fold(tf.float32)]  # the frozen form: folded once
    np.testing.assert_array_equal(gate.fast_decision(tf.constant(x), folded).numpy(), decided)


def test_gate_invariants_and_parameter_count(tmp_path):
    gate = Gate(hidden=16)
    gate.build((None, 8, 8, 32))
    # fc1 32*16 + 16, BN gamma/beta 2*16 (+ moving 2*16), fc2 16*2 + 2.
    inv.check_param_count(gate, 32 * 16 + 16 + 4 * 16 + 16 * 2 + 2, trainable=32 * 16 + 16 + 2 * 16 + 16 * 2 + 2)
    inv.check_config_round_trip(gate)
    x = inv.random_inputs((8, 8, 32), batch_size=4)
    inv.check_symbolic_matches_eager(gate, (8, 8, 32), inputs=x, batch_size=4)
    inv.check_train_step(gate, x, lambda logits: tf.reduce_sum(tf.nn.softmax(logits)[:, 1] * tf.range(4.0)))


def test_bad_arguments_fail_with_one_line():
    with pytest.raises(ConfigError, match="hidden"):
        Gate(hidden=0)
    with pytest.raises(ConfigError, match="skip, execute"):
        Gate(init_bias=(1.0,))
