"""Conditional Similarity Networks and their baselines (Veit, thesis ch. 3; specs/seed_004.md M3).

    EmbeddingNet          f(x) = W g(x): a CNN trunk g and a linear projection W to d dims (Sec. 3.3)
    ConditionalSimilarityNetwork
                          one EmbeddingNet + condition masks (learned, fixed disjoint, or none =
                          the standard triplet network of Fig. 3.6a)
    SpecialistNetworks    n_c EmbeddingNets, one per notion (Fig. 3.6b); the condition picks one

Every model takes `{"images": float [B, H, W, C] (normalised), "condition": int [B]}` and returns
`{"embedding": f(x) [B, d], "masked_embedding": f(x) ⊙ m_c [B, d]}`. For the standard triplet net
both are equal; for the specialists `embedding` is the chosen specialist's embedding.

Trunks:
  conv     a VGG-style stack (3x3 conv-BN-ReLU, 2x2 max pool after each stage), global average
           pooling or flattening, then hidden fully connected layers. The Fonts network is "a
           variant of the VGG architecture with 9 layers of 3 by 3 convolutions and two fully
           connected layers" (Sec. 3.4.1): widths and pooling are not given; we choose VGG-16's
           widths 64-128-256-512 with 2+2+3+2 convolutions and one hidden FC of 512, the embedding
           layer being the second FC.
  resnet   garden.nn.resnet.ResNet with num_classes=0 (pooled features). Zappos: "an 18 layer deep
           residual network ... We remove one downsampling module" (Sec. 3.4.1); the authors' code
           drops layer4, leaving 256 pooled features (blocks (2, 2, 2), widths (64, 128, 256)).
"""

from __future__ import annotations

import keras
from keras import ops

from garden.errors import ConfigError
from garden.methods.csn.masks import ConditionMasks
from garden.nn.layers import ConvBN, dense_initializer
from garden.nn.resnet import ResNet
from garden.registry import register_model

TRUNKS = ("conv", "resnet")
# Sec. 3.4: "we use an embedding dimension of 64 for all our experiments".
PAPER_EMBEDDING_DIM = 64
SMALL_CONV_TRUNK = {"stages": [[16], [32], [64], [64]], "pooling": "avg", "hidden_units": []}
FONTS_VGG9_TRUNK = {"stages": [[64, 64], [128, 128], [256, 256, 256], [512, 512]], "pooling": "flatten",
                    "hidden_units": [512]}
ZAPPOS_RESNET18_TRUNK = {"blocks_per_stage": [2, 2, 2], "block_type": "basic", "stage_widths": [64, 128, 256],
                         "stem": "imagenet"}


@keras.saving.register_keras_serializable(package="garden.csn")
class ConvTrunk(keras.layers.Layer):
    """VGG-style trunk: per stage, 3x3 conv-BN-ReLU layers then a 2x2 max pool; pooling; FCs."""

    def __init__(self, stages=tuple(tuple(s) for s in SMALL_CONV_TRUNK["stages"]), pooling="avg",
                 hidden_units=(), **kwargs):
        super().__init__(**kwargs)
        self.stages = [[int(w) for w in stage] for stage in stages]
        if not self.stages or any(not stage for stage in self.stages):
            raise ConfigError(f"model.trunk_kwargs.stages: need non-empty stages of conv widths, got {stages}")
        if pooling not in ("avg", "flatten"):
            raise ConfigError(f"model.trunk_kwargs.pooling: unknown {pooling!r}; valid: avg, flatten")
        self.pooling = pooling
        self.hidden_units = [int(u) for u in hidden_units]
        policy = self.dtype_policy
        self.convs = [[ConvBN(w, 3, dtype=policy, name=f"stage{s}_conv{i}") for i, w in enumerate(stage)]
                      for s, stage in enumerate(self.stages)]
        self.pools = [keras.layers.MaxPooling2D(2, dtype=policy, name=f"stage{s}_pool")
                      for s in range(len(self.stages))]
        self.pool = keras.layers.GlobalAveragePooling2D(dtype=policy) if pooling == "avg" \
            else keras.layers.Flatten(dtype=policy)
        self.hidden = [keras.layers.Dense(u, activation="relu", kernel_initializer=dense_initializer(),
                                          dtype=policy, name=f"fc{i}") for i, u in enumerate(self.hidden_units)]

    def call(self, x, training=False):
        for convs, pool in zip(self.convs, self.pools):
            for conv in convs:
                x = conv(x, training=training)
            x = pool(x)
        x = self.pool(x)
        for dense in self.hidden:
            x = dense(x)
        return x

    def compute_output_shape(self, input_shape):
        if self.hidden_units:
            return (input_shape[0], self.hidden_units[-1])
        if self.pooling == "avg":
            return (input_shape[0], self.stages[-1][-1])
        h, w = input_shape[1], input_shape[2]
        for _ in self.stages:
            h, w = (None if h is None else h // 2), (None if w is None else w // 2)
        flat = None if h is None or w is None else h * w * self.stages[-1][-1]
        return (input_shape[0], flat)

    def get_config(self):
        config = super().get_config()
        config.update(stages=self.stages, pooling=self.pooling, hidden_units=self.hidden_units)
        return config


def _make_trunk(trunk: str, trunk_kwargs: dict, policy, name: str):
    if trunk == "conv":
        return ConvTrunk(**trunk_kwargs, dtype=policy, name=name)
    if trunk == "resnet":
        kwargs = dict(trunk_kwargs)
        if kwargs.pop("num_classes", 0) != 0:
            raise ConfigError("model.trunk_kwargs.num_classes: the resnet trunk gives pooled features; leave it out")
        return ResNet(**kwargs, num_classes=0, dtype=policy, name=name)
    raise ConfigError(f"model.trunk: unknown trunk {trunk!r}; valid: {', '.join(TRUNKS)}")


def _inputs(inputs):
    if not isinstance(inputs, dict) or "images" not in inputs or "condition" not in inputs:
        got = sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__
        raise ConfigError(f"CSN models take a dict with 'images' and 'condition', got {got}")
    return inputs["images"], inputs["condition"]


@keras.saving.register_keras_serializable(package="garden.csn")
class EmbeddingNet(keras.Model):
    """f(x) = W g(x): trunk g, then a linear embedding layer W (no activation, Sec. 3.3)."""

    def __init__(self, trunk="conv", trunk_kwargs=None, embedding_dim=PAPER_EMBEDDING_DIM, **kwargs):
        super().__init__(**kwargs)
        self.trunk_name = trunk
        self.trunk_kwargs = dict(SMALL_CONV_TRUNK if trunk_kwargs is None and trunk == "conv" else trunk_kwargs or {})
        self.embedding_dim = int(embedding_dim)
        if self.embedding_dim < 1:
            raise ConfigError(f"model.embedding_dim must be >= 1, got {embedding_dim}")
        policy = self.dtype_policy
        self.trunk = _make_trunk(trunk, self.trunk_kwargs, policy, "trunk")
        self.project = keras.layers.Dense(self.embedding_dim, dtype=policy, name="embedding")

    def call(self, images, training=False):
        return self.project(self.trunk(images, training=training))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.embedding_dim)

    def get_config(self):
        config = super().get_config()
        config.update(trunk=self.trunk_name, trunk_kwargs=self.trunk_kwargs, embedding_dim=self.embedding_dim)
        return config


class _Conditional(keras.Model):
    """Shared config and output-shape code of the conditional models."""

    def compute_output_shape(self, input_shape):
        batch = input_shape["images"][0]
        return {"embedding": (batch, self.embedding_dim), "masked_embedding": (batch, self.embedding_dim)}

    def mask_l1(self):
        """The mask regulariser's ‖m‖₁ (0 without learned masks)."""
        return ops.zeros((), "float32")

    def mask_matrix(self):
        """`[num_conditions, d]` masks, or None for models without masks."""
        return None


@register_model("csn")
@keras.saving.register_keras_serializable(package="garden.csn")
class ConditionalSimilarityNetwork(_Conditional):
    """One embedding net + condition masks. `masks`: learned | fixed | none (the standard triplet
    network: every notion in one embedding)."""

    def __init__(self, trunk="conv", trunk_kwargs=None, embedding_dim=PAPER_EMBEDDING_DIM, num_conditions=4,
                 masks="learned", mask_seed=None, **kwargs):
        super().__init__(**kwargs)
        policy = self.dtype_policy
        self.net = EmbeddingNet(trunk, trunk_kwargs, embedding_dim, dtype=policy, name="embedding_net")
        self.embedding_dim, self.num_conditions, self.mask_kind = self.net.embedding_dim, int(num_conditions), masks
        self.mask_seed = mask_seed
        self.masks = ConditionMasks(self.num_conditions, self.embedding_dim, kind=masks, seed=mask_seed,
                                    dtype=policy, name="masks")

    def call(self, inputs, training=False):
        images, condition = _inputs(inputs)
        embedding = self.net(images, training=training)
        return {"embedding": embedding, "masked_embedding": embedding * self.masks(condition)}

    def mask_l1(self):
        return self.masks.l1()

    def mask_matrix(self):
        return self.masks.matrix()

    def get_config(self):
        config = super().get_config()
        config.update(trunk=self.net.trunk_name, trunk_kwargs=self.net.trunk_kwargs, embedding_dim=self.embedding_dim,
                      num_conditions=self.num_conditions, masks=self.mask_kind, mask_seed=self.mask_seed)
        return config


@register_model("csn_specialists")
@keras.saving.register_keras_serializable(package="garden.csn")
class SpecialistNetworks(_Conditional):
    """A set of n_c task-specific triplet networks (Fig. 3.6b): the condition picks the net.

    Every net embeds every image (n_c times the compute of one net); each net's weights get
    gradients only from the triplets of its own condition, so training them together equals
    training them apart on their own triplets (up to the shared optimiser step count).
    """

    def __init__(self, trunk="conv", trunk_kwargs=None, embedding_dim=PAPER_EMBEDDING_DIM, num_conditions=4,
                 **kwargs):
        super().__init__(**kwargs)
        if int(num_conditions) < 1:
            raise ConfigError(f"model.num_conditions must be >= 1, got {num_conditions}")
        policy = self.dtype_policy
        self.num_conditions = int(num_conditions)
        self.nets = [EmbeddingNet(trunk, trunk_kwargs, embedding_dim, dtype=policy, name=f"specialist{c}")
                     for c in range(self.num_conditions)]
        self.embedding_dim = self.nets[0].embedding_dim

    def call(self, inputs, training=False):
        images, condition = _inputs(inputs)
        stacked = ops.stack([net(images, training=training) for net in self.nets], axis=1)  # [B, n_c, d]
        index = ops.reshape(ops.cast(condition, "int32"), (-1, 1, 1))
        chosen = ops.squeeze(ops.take_along_axis(stacked, index, axis=1), axis=1)
        return {"embedding": chosen, "masked_embedding": chosen}

    def get_config(self):
        config = super().get_config()
        config.update(trunk=self.nets[0].trunk_name, trunk_kwargs=self.nets[0].trunk_kwargs,
                      embedding_dim=self.embedding_dim, num_conditions=self.num_conditions)
        return config


# -- the paper's configurations ----------------------------------------------------------------


@register_model("csn_resnet18_zappos")
def csn_resnet18_zappos(num_conditions=4, masks="learned", embedding_dim=PAPER_EMBEDDING_DIM, mask_seed=None,
                        **kwargs):
    """Zappos (Sec. 3.4.1): ResNet-18 without layer4 (256 pooled features), d = 64, 4 notions, 112x112."""
    return ConditionalSimilarityNetwork("resnet", dict(ZAPPOS_RESNET18_TRUNK), embedding_dim, num_conditions, masks,
                                        mask_seed, **kwargs)


@register_model("csn_vgg9_fonts")
def csn_vgg9_fonts(num_conditions=2, masks="learned", embedding_dim=PAPER_EMBEDDING_DIM, mask_seed=None, **kwargs):
    """Fonts (Sec. 3.4.1): 9 3x3 conv layers + 2 FC (our widths, see the module docstring), 64x64 grey."""
    return ConditionalSimilarityNetwork("conv", dict(FONTS_VGG9_TRUNK), embedding_dim, num_conditions, masks,
                                        mask_seed, **kwargs)
