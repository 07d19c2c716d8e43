"""Condition masks of Conditional Similarity Networks (Veit, thesis ch. 3, Sec. 3.3).

A condition c (a notion of similarity) selects a non-negative mask m_c over the d embedding
dimensions; the triplet loss then compares masked embeddings f(x) ⊙ m_c (Eq. 3.3).

Kinds:
  learned   m = ReLU(β), β ∈ R^{n_c×d} trained with the network. β ~ N(0.9, 0.7): the thesis says
            "0.9 mean and 0.7 variance"; the authors' PyTorch code calls normal_(0.9, 0.7),
            i.e. standard deviation 0.7. We follow the code (specs/seed_004.md M3 §2, §8).
  fixed     disjoint binary blocks, 1/n_c-th of the dimensions per condition ("we allocate
            1/n_c th of the embedding dimensions to one task"); not trainable, no ReLU.
            When n_c does not divide d, the first d mod n_c blocks get one extra dimension.
  none      all ones: the standard triplet network, one embedding for every notion.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from garden.errors import ConfigError

MASK_KINDS = ("learned", "fixed", "none")
# Sec. 3.3: "initialize β_m using a normal distribution with 0.9 mean and 0.7 variance".
LEARNED_INIT_MEAN = 0.9
LEARNED_INIT_STD = 0.7


def disjoint_masks(num_conditions: int, dim: int) -> np.ndarray:
    """`(num_conditions, dim)` float32 0/1 blocks that partition the dimensions in order."""
    if num_conditions < 1 or dim < num_conditions:
        raise ConfigError(f"fixed masks need 1 <= num_conditions <= embedding_dim, got "
                          f"num_conditions={num_conditions}, embedding_dim={dim}")
    masks = np.zeros((num_conditions, dim), np.float32)
    for c, block in enumerate(np.array_split(np.arange(dim), num_conditions)):
        masks[c, block] = 1.0
    return masks


@keras.saving.register_keras_serializable(package="garden.csn")
class ConditionMasks(keras.layers.Layer):
    """condition ids `[B]` -> masks `[B, dim]` (see the module docstring for `kind`)."""

    def __init__(self, num_conditions: int, dim: int, kind: str = "learned",
                 init_mean: float = LEARNED_INIT_MEAN, init_std: float = LEARNED_INIT_STD,
                 seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if kind not in MASK_KINDS:
            raise ConfigError(f"model.masks: unknown mask kind {kind!r}; valid: {', '.join(MASK_KINDS)}")
        if int(num_conditions) < 1:
            raise ConfigError(f"model.num_conditions must be >= 1, got {num_conditions}")
        self.num_conditions, self.dim, self.kind = int(num_conditions), int(dim), kind
        self.init_mean, self.init_std = float(init_mean), float(init_std)
        self.seed = seed
        if kind == "learned":
            self.beta = self.add_weight(
                name="beta", shape=(self.num_conditions, self.dim),
                initializer=keras.initializers.RandomNormal(self.init_mean, self.init_std, seed=seed))
        else:
            table = disjoint_masks(self.num_conditions, self.dim) if kind == "fixed" \
                else np.ones((self.num_conditions, self.dim), np.float32)
            # A constant, not a weight: fixed masks are not learned (authors' code: requires_grad=False).
            self._table = table

    def matrix(self):
        """All masks, `[num_conditions, dim]` (non-negative)."""
        if self.kind == "learned":
            return ops.relu(self.beta)
        return ops.convert_to_tensor(self._table, dtype=self.variable_dtype)

    def call(self, condition):
        condition = ops.cast(ops.reshape(condition, (-1,)), "int32")
        masks = ops.take(self.matrix(), condition, axis=0)
        return ops.cast(masks, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.dim)

    def l1(self):
        """‖m‖₁ over the whole mask matrix (Eq. 3.6); 0 for masks that are not learned."""
        if self.kind != "learned":
            return ops.zeros((), "float32")
        return ops.sum(ops.abs(ops.cast(self.matrix(), "float32")))

    def get_config(self):
        config = super().get_config()
        config.update(num_conditions=self.num_conditions, dim=self.dim, kind=self.kind,
                      init_mean=self.init_mean, init_std=self.init_std, seed=self.seed)
        return config
