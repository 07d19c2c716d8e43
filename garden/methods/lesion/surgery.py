"""Test-time surgery on a trained network's blocks (Veit thesis, ch. 4, Secs. 4.3 and 4.4).

Works on any model with the garden's block hooks: `model.blocks` (each with `skip(x)`, and for
residual blocks `forward_parts(x) -> (shortcut, residual)` and `combine(shortcut, residual)`),
`model.forward_features(x, block_fn=...)` and `model.forward_head(x)`: the garden's ResNets
(garden/nn/resnet.py) and the plain VGG of this room.

- `lesioned_logits`: delete blocks and/or run them in another order.
- `path_gradient_norm`: the gradient at the input of the first block through ONE path of the
  unraveled network, selected by a 0/1 mask over the blocks (Sec. 4.4.2).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import keras
import tensorflow as tf

from garden.errors import GardenError

__all__ = [
    "BlockInfo",
    "block_infos",
    "check_lesionable",
    "is_residual",
    "lesioned_logits",
    "path_gradient",
    "path_gradient_norm",
]


def check_lesionable(model) -> list:
    """The model's blocks; a one-line GardenError when the model lacks the lesion hooks."""
    blocks = getattr(model, "blocks", None)
    if not blocks or not hasattr(model, "forward_features") or not hasattr(model, "forward_head"):
        raise GardenError(
            f"model {type(model).__name__!r} has no lesion hooks (blocks, forward_features, "
            "forward_head); valid: the garden's ResNets (resnet20...resnet164, resnet18...152) "
            "and plain_vgg15"
        )
    if not getattr(model, "include_top", True) or not getattr(model, "num_classes", 1):
        raise GardenError("the lesion study needs a classifier: include_top=true, num_classes > 0")
    return list(blocks)


def is_residual(model) -> bool:
    """True when every block has a residual branch (`forward_parts`): paths can be analysed."""
    return all(hasattr(block, "forward_parts") for block in check_lesionable(model))


@dataclasses.dataclass(frozen=True)
class BlockInfo:
    """What the lesion experiments need to know about one block."""

    index: int
    name: str
    stage: int
    downsampling: bool  # the thesis' "downsampling block": a strided / widening shortcut
    deletable: bool
    # Blocks with the same key can be swapped (Sec. 4.3.2: "compatible dimensionality");
    # None for blocks that never move (downsampling blocks, shape-changing layers).
    swap_key: int | None


def block_infos(model) -> list[BlockInfo]:
    """One `BlockInfo` per block, in order (the model must be built)."""
    blocks = check_lesionable(model)
    stages = getattr(model, "stages", [blocks])
    stage_of = {id(b): s for s, stage in enumerate(stages) for b in stage}
    infos = []
    for index, block in enumerate(blocks):
        downsampling = bool(getattr(block, "is_downsampling", False))
        deletable = bool(getattr(block, "deletable", True))
        # An identity-shortcut block maps C channels to C at the same resolution, so any two
        # with the same width fit each other's place. Plain layers: same for width-preserving.
        width = getattr(block, "out_channels", None) or block.conv.filters
        infos.append(
            BlockInfo(
                index=index,
                name=block.name,
                stage=int(stage_of.get(id(block), 0)),
                downsampling=downsampling,
                deletable=deletable,
                swap_key=None if downsampling or not deletable else int(width),
            )
        )
    return infos


def _check_plan(n: int, deleted: Iterable[int], order: Sequence[int] | None):
    deleted = frozenset(int(i) for i in deleted)
    bad = sorted(i for i in deleted if not 0 <= i < n)
    if bad:
        raise GardenError(f"deleted blocks {bad} out of range; valid: 0..{n - 1}")
    if order is None:
        return deleted, list(range(n))
    order = [int(i) for i in order]
    if sorted(order) != list(range(n)):
        raise GardenError(f"order must be a permutation of 0..{n - 1}, got {order}")
    return deleted, order


def lesioned_logits(model, x, *, deleted: Iterable[int] = (), order: Sequence[int] | None = None,
                    training: bool = False):
    """Logits of `model` on (normalised) inputs `x` with blocks deleted and/or reordered.

    `order[p]` is the block that runs at position p (default: the identity); a block in
    `deleted` is replaced by its `skip`: the identity for identity-shortcut blocks and plain
    layers, the shortcut alone (projection or zero padding) for downsampling blocks, as the
    thesis does ("leaving the skip connection (or downsampling projection, if any) untouched").
    """
    blocks = check_lesionable(model)
    deleted, order = _check_plan(len(blocks), deleted, order)

    def block_fn(index, block, h, training):
        chosen = blocks[order[index]]
        if order[index] in deleted:
            return chosen.skip(h, training=training)
        return chosen(h, training=training)

    features = model.forward_features(x, training=training, block_fn=block_fn)
    return model.forward_head(features, training=training)


def _one_path_block_fn(mask, record):
    """block_fn whose backward pass enters the residual branch of block i iff mask[i] == 1 and
    the shortcut otherwise; the forward values are exactly the plain network's.

    Spec M4, item 5 (the thesis' sampling of Sec. 4.4.2) with the stop-gradient trick:
    shortcut + m * (sg(shortcut) - shortcut) has the value of the shortcut and the gradient
    (1 - m) * d shortcut; likewise the residual with m. `record` receives the first block's
    input, where the gradient is measured.
    """

    def block_fn(index, block, h, training):
        if index == 0:
            record.append(h)
        shortcut, residual = block.forward_parts(h, training=training)
        m = keras.ops.cast(mask[index], h.dtype)
        shortcut = shortcut + m * (tf.stop_gradient(shortcut) - shortcut)
        residual = residual + (1.0 - m) * (tf.stop_gradient(residual) - residual)
        return block.combine(shortcut, residual)

    return block_fn


def path_gradient(model, x, labels, mask, *, training: bool = False):
    """d(mean cross-entropy)/d(input of the first block) through the single path of the
    unraveled network that enters exactly the residual modules with mask == 1 (float [n] of
    0/1; a tensor, so a traced caller can reuse one graph for every mask).

    Residual models only. The forward pass is the whole network (its output and loss are
    unchanged); only the backward pass follows the one path (Sec. 4.4.2).
    """
    if not is_residual(model):
        raise GardenError(
            f"{type(model).__name__} has no skip connections: a plain network has one path, "
            "so there is no gradient per path length to measure"
        )
    record: list = []
    with tf.GradientTape() as tape:
        features = model.forward_features(
            x, training=training, block_fn=_watching(tape, _one_path_block_fn(mask, record))
        )
        logits = keras.ops.cast(model.forward_head(features, training=training), "float32")
        loss = keras.ops.mean(
            keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        )
    return tape.gradient(loss, record[0])


def path_gradient_norm(model, x, labels, mask, *, training: bool = False):
    """The L2 norm (over the whole batch tensor) of `path_gradient`: the thesis' "gradient
    magnitude" (the norm is not named there; L2 is our reading). A float32 scalar tensor."""
    grad = path_gradient(model, x, labels, mask, training=training)
    return tf.norm(tf.cast(grad, tf.float32))


def _watching(tape, block_fn):
    """block_fn that makes the tape watch the first block's input (an intermediate tensor)."""

    def wrapped(index, block, h, training):
        if index == 0:
            h = tf.convert_to_tensor(h)
            tape.watch(h)
        return block_fn(index, block, h, training)

    return wrapped
