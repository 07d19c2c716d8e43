"""Small shared blocks for the garden's backbones, and the `Backbone` base class.

Conventions used by every backbone in `garden/nn/`:

- channels_last; images are float and already normalised by the task.
- A convolution followed by batch normalisation has no bias (the BN shift replaces it), so
  TensorFlow can fuse Conv + BN. Strided convolutions pad symmetrically ("fixed padding", as
  Caffe/PyTorch and the TF Model Garden do) instead of TF's asymmetric "same", so that a
  3x3/2 convolution and the 1x1/2 projection beside it sample the same pixel grid.
- Convolutions use He-normal initialisation with fan_out, as He et al. and fb.resnet.torch
  (`n = kW*kH*nOutputPlane`, std = sqrt(2/n)) do. No kernel regularisers: weight decay is the
  optimiser's job (decoupled, e.g. AdamW / SGDW).
- BatchNorm: momentum 0.9 (PyTorch's 0.1), epsilon 1e-5.
- Every sublayer is created with the parent's dtype policy, so mixed precision applies to all.
"""

from __future__ import annotations

import inspect

import keras

from garden.registry import register_model

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
PRELU_INIT = 0.25  # He et al. 2015, "Delving deep into rectifiers", Sec. 2.1


def conv_initializer():
    """He-normal, fan_out (He et al. 2015; fb.resnet.torch and torchvision do the same)."""
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_out", distribution="untruncated_normal"
    )


def dense_initializer():
    """He-normal, fan_in, for hidden fully connected layers followed by a rectifier."""
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_in", distribution="untruncated_normal"
    )


class SymbolicShapes:
    """Mixin for layers and models made of other layers: `build` and `compute_output_shape`
    run `call` on `keras.KerasTensor`s, so sublayers build from shape arithmetic alone.

    Without it Keras builds such a layer (and answers a symbolic call) by tracing `call` in a
    TensorFlow graph, which for a ResNet-50 costs seconds. `call` must then use only Keras
    layers and `keras.ops` on its inputs (all garden backbones do).
    """

    def _symbolic_call(self, input_shape):
        return self.call(keras.KerasTensor(tuple(input_shape), dtype=self.compute_dtype))

    def build(self, input_shape):
        self._symbolic_call(input_shape)

    def compute_output_shape(self, input_shape):
        return keras.tree.map_structure(lambda t: t.shape, self._symbolic_call(input_shape))


class CompositeLayer(SymbolicShapes, keras.layers.Layer):
    """A `keras.layers.Layer` built from sublayers (see `SymbolicShapes`)."""


ACTIVATIONS = ("relu", "prelu", None)


def _check_activation(activation):
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; valid: relu, prelu, None")
    return activation


@keras.saving.register_keras_serializable(package="garden")
class ChannelPReLU(keras.layers.Layer):
    """Channel-wise PReLU (He et al. 2015): max(x, 0) + alpha_c * min(x, 0), alpha_c = 0.25 at
    init, one slope per channel (the last axis) for inputs of any rank. Keras' `PReLU` would
    by default learn one slope per pixel and channel."""

    def build(self, input_shape):
        self.alpha = self.add_weight(
            shape=(input_shape[-1],),
            initializer=keras.initializers.Constant(PRELU_INIT),
            name="alpha",
        )

    def call(self, inputs):
        alpha = keras.ops.cast(self.alpha, inputs.dtype)
        return keras.ops.relu(inputs) - alpha * keras.ops.relu(-inputs)

    def compute_output_shape(self, input_shape):
        return input_shape


def _activation_layer(activation, dtype):
    """The layer an activation needs (PReLU has weights), or None (ReLU is an op)."""
    if _check_activation(activation) == "prelu":
        return ChannelPReLU(dtype=dtype, name="prelu")
    return None


def _activate(x, activation, layer):
    if layer is not None:
        return layer(x)
    return keras.ops.relu(x) if activation == "relu" else x


@keras.saving.register_keras_serializable(package="garden")
class Conv(keras.layers.Conv2D):
    """`keras.layers.Conv2D` with symmetric ("fixed") padding for strided convolutions.

    padding="same": stride 1 uses Keras "same" padding (symmetric for odd kernels); stride > 1
    pads `dilation * (kernel - 1) // 2` on each side, then convolves with "valid" padding.
    padding="valid": no padding (output floor((in - kernel) / stride) + 1, as AlexNet's conv1).

    Args:
        filters, kernel_size, strides, dilation_rate, groups: as in `keras.layers.Conv2D`
            (square kernels and strides).
        padding: "same" or "valid" (see above).
        use_bias: add a bias (False when a BatchNorm follows).
        kernel_initializer: a Keras initializer name or config; default He-normal fan_out.
    """

    def __init__(
        self,
        filters,
        kernel_size=3,
        strides=1,
        dilation_rate=1,
        groups=1,
        padding="same",
        use_bias=False,
        kernel_initializer=None,
        **kwargs,
    ):
        if padding not in ("same", "valid"):
            raise ValueError(f"unknown padding {padding!r}; valid: same, valid")
        if int(strides) > 1 and int(dilation_rate) > 1:
            raise ValueError("a convolution cannot have both strides > 1 and dilation_rate > 1")
        fixed = padding == "same" and int(strides) > 1
        super().__init__(
            int(filters),
            int(kernel_size),
            strides=int(strides),
            padding="same" if padding == "same" and not fixed else "valid",
            dilation_rate=int(dilation_rate),
            groups=int(groups),
            use_bias=bool(use_bias),
            kernel_initializer=(
                conv_initializer()
                if kernel_initializer is None
                else keras.initializers.get(kernel_initializer)
            ),
            **kwargs,
        )
        self.padding_mode = padding
        self.kernel_initializer_config = kernel_initializer
        self.fixed_padding = int(dilation_rate) * (int(kernel_size) - 1) // 2 if fixed else 0

    def call(self, inputs):
        p = self.fixed_padding
        if p:
            inputs = keras.ops.pad(inputs, [[0, 0], [p, p], [p, p], [0, 0]])
        return super().call(inputs)

    def convolution_op(self, inputs, kernel):
        if self.groups == 1:
            return super().convolution_op(inputs, kernel)
        # Grouped: one convolution per group, concatenated. Same kernel layout and result as
        # Keras' grouped Conv2D, which on a TF CPU runs an XLA-compiled function that tf2onnx
        # cannot convert; this form exports to ONNX and SavedModel everywhere.
        outputs = [
            keras.ops.conv(
                x,
                k,
                strides=self.strides,
                padding=self.padding,
                data_format=self.data_format,
                dilation_rate=self.dilation_rate,
            )
            for x, k in zip(
                keras.ops.split(inputs, self.groups, axis=-1),
                keras.ops.split(kernel, self.groups, axis=-1),
            )
        ]
        return keras.ops.concatenate(outputs, axis=-1)

    def compute_output_shape(self, input_shape):
        p = self.fixed_padding
        if p:
            batch, height, width, channels = input_shape
            input_shape = (
                batch,
                None if height is None else height + 2 * p,
                None if width is None else width + 2 * p,
                channels,
            )
        return super().compute_output_shape(input_shape)

    def get_config(self):
        config = keras.layers.Layer.get_config(self)  # Conv2D's arguments are not ours
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size[0],
            strides=self.strides[0],
            dilation_rate=self.dilation_rate[0],
            groups=self.groups,
            padding=self.padding_mode,
            use_bias=self.use_bias,
            kernel_initializer=self.kernel_initializer_config,
        )
        return config


@keras.saving.register_keras_serializable(package="garden")
class BNAct(keras.layers.BatchNormalization):
    """BatchNorm -> activation in one layer: the pre-activation unit (He et al. 2016,
    "Identity mappings") and the tail of `ConvBN`. Works on any rank (last axis).

    Args:
        activation: "relu", "prelu" (channel-wise) or None.
        zero_gamma: initialise the BN scale to 0.
    """

    def __init__(self, activation="relu", zero_gamma=False, **kwargs):
        super().__init__(
            momentum=BN_MOMENTUM,
            epsilon=BN_EPSILON,
            gamma_initializer="zeros" if zero_gamma else "ones",
            **kwargs,
        )
        self.activation = _check_activation(activation)
        self.zero_gamma = bool(zero_gamma)
        self.prelu = _activation_layer(activation, self.dtype_policy)

    def build(self, input_shape):
        super().build(input_shape)
        if self.prelu is not None:
            self.prelu.build(input_shape)

    def call(self, inputs, training=None, mask=None):
        x = super().call(inputs, training=training, mask=mask)
        return _activate(x, self.activation, self.prelu)

    def get_config(self):
        config = keras.layers.Layer.get_config(self)  # BatchNormalization's are fixed here
        config.update(activation=self.activation, zero_gamma=self.zero_gamma)
        return config


@keras.saving.register_keras_serializable(package="garden")
class ConvBN(keras.layers.Layer):
    """Conv (no bias) -> BatchNorm -> activation: the post-activation unit.

    Args:
        filters, kernel_size, strides, dilation_rate, groups, padding: of the convolution
            (see `Conv`).
        activation: "relu", "prelu" or None.
        use_bn: False gives Conv (with bias) -> activation, e.g. for the original VGG/AlexNet.
        zero_gamma: initialise the BN scale to 0 (the residual branch then starts as zero).
    """

    def __init__(
        self,
        filters,
        kernel_size=3,
        strides=1,
        dilation_rate=1,
        groups=1,
        padding="same",
        activation="relu",
        use_bn=True,
        zero_gamma=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.activation = _check_activation(activation)
        self.use_bn = bool(use_bn)
        self.zero_gamma = bool(zero_gamma)
        policy = self.dtype_policy
        self.conv = Conv(
            filters,
            kernel_size,
            strides=strides,
            dilation_rate=dilation_rate,
            groups=groups,
            padding=padding,
            use_bias=not self.use_bn,
            dtype=policy,
            name="conv",
        )
        if self.use_bn:
            self.bn = BNAct(activation, zero_gamma=self.zero_gamma, dtype=policy, name="bn")
            self.prelu = None
        else:
            self.bn = None
            self.prelu = _activation_layer(activation, policy)

    def build(self, input_shape):
        self.conv.build(input_shape)
        output_shape = self.conv.compute_output_shape(input_shape)
        for layer in (self.bn, self.prelu):
            if layer is not None:
                layer.build(output_shape)

    def call(self, inputs, training=False):
        x = self.conv(inputs)
        if self.bn is not None:
            return self.bn(x, training=training)
        return _activate(x, self.activation, self.prelu)

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        conv = self.conv.get_config()
        config.update(
            {k: conv[k] for k in ("filters", "kernel_size", "strides", "dilation_rate", "groups")},
            padding=conv["padding"],
            activation=self.activation,
            use_bn=self.use_bn,
            zero_gamma=self.zero_gamma,
        )
        return config


@keras.saving.register_keras_serializable(package="garden")
class DenseBN(keras.layers.Layer):
    """Dense (no bias) -> BatchNorm -> activation -> dropout; a hidden fc layer.

    Args:
        units: output width.
        activation: "relu", "prelu" or None.
        use_bn: False gives Dense (with bias) -> activation.
        dropout: dropout rate after the activation (0 disables it).
    """

    def __init__(self, units, activation="relu", use_bn=True, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.activation = _check_activation(activation)
        self.use_bn = bool(use_bn)
        self.dropout = float(dropout)
        policy = self.dtype_policy
        self.dense = keras.layers.Dense(
            self.units,
            use_bias=not self.use_bn,
            kernel_initializer=dense_initializer(),
            dtype=policy,
            name="dense",
        )
        if self.use_bn:
            self.bn = BNAct(activation, dtype=policy, name="bn")
            self.prelu = None
        else:
            self.bn = None
            self.prelu = _activation_layer(activation, policy)
        self.drop = (
            keras.layers.Dropout(self.dropout, dtype=policy, name="dropout")
            if self.dropout > 0
            else None
        )

    def build(self, input_shape):
        self.dense.build(input_shape)
        output_shape = self.compute_output_shape(input_shape)
        for layer in (self.bn, self.prelu):
            if layer is not None:
                layer.build(output_shape)

    def call(self, inputs, training=False):
        x = self.dense(inputs)
        if self.bn is not None:
            x = self.bn(x, training=training)
        else:
            x = _activate(x, self.activation, self.prelu)
        if self.drop is not None:
            x = self.drop(x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units, activation=self.activation, use_bn=self.use_bn, dropout=self.dropout
        )
        return config


def drop_path(rate, *, dtype=None, name=None):
    """Stochastic depth (Huang et al. 2016) as per-sample dropout of a residual branch.

    Training scales kept branches by 1/(1 - rate) ("drop path"), so inference is the plain
    network. Returns None for rate 0.
    """
    if rate <= 0:
        return None
    return keras.layers.Dropout(rate, noise_shape=(None, 1, 1, 1), dtype=dtype, name=name)


def scale_width(width, multiplier, minimum=1):
    """round(width * multiplier), at least `minimum`: the channel scaling for tiny configs."""
    return max(int(minimum), int(round(width * multiplier)))


class Backbone(SymbolicShapes, keras.Model):
    """Base of the garden's image backbones: one uniform, timm-like API.

    Subclasses build their layers, fill `self._feature_info`, and implement `features()`.

    - `model(x)` with `include_top=True` and `num_classes > 0` gives logits `[B, num_classes]`;
      `num_classes=0` gives the pooled features `[B, num_features]` (no classifier);
      `include_top=False` gives the final feature map `[B, h, w, C]` (no pooling, no head).
    - `features(x, training=False)` gives an ordered dict of feature maps; its last entry is
      the final map that the head consumes. `feature_info` lists each entry's `key`,
      `channels` and actual `stride` (input pixels per output pixel).
    - `forward_features(x)` is the final feature map, `forward_head(feature_map)` the head:
      global pooling or flatten + hidden fc layers, dropout, classifier (`pre_logits=True`
      stops before the dropout and classifier).

    Args:
        num_classes: width of the classifier; 0 for none.
        include_top: False to return the final feature map.
        head_dropout: dropout rate before the classifier.
    """

    def __init__(self, num_classes=1000, include_top=True, head_dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        self.num_classes = int(num_classes)
        self.include_top = bool(include_top)
        self.head_dropout = float(head_dropout)
        self._feature_info: list[dict] = []
        self._num_features = None  # set by backbones whose head has hidden layers (VGG, AlexNet)
        # The head: [global_pool] [flatten, hidden fc layers] [head_drop] [classifier].
        self.global_pool = None
        self.flatten = None
        self.fc = []
        self.head_drop = None
        self.classifier = None

    def _build_classifier(self, *, pool=True):
        """Create the global pooling, dropout and classifier layers (subclasses call this)."""
        if pool:
            self.global_pool = keras.layers.GlobalAveragePooling2D(
                dtype=self.dtype_policy, name="global_pool"
            )
        if self.include_top and self.head_dropout > 0:
            self.head_drop = keras.layers.Dropout(
                self.head_dropout, dtype=self.dtype_policy, name="head_dropout"
            )
        if self.include_top and self.num_classes > 0:
            self.classifier = keras.layers.Dense(
                self.num_classes, dtype=self.dtype_policy, name="classifier"
            )

    @property
    def feature_info(self) -> list[dict]:
        return [dict(info) for info in self._feature_info]

    @property
    def num_features(self) -> int:
        """Width of the pooled features (what `num_classes=0` returns)."""
        if self._num_features is not None:
            return int(self._num_features)
        return int(self._feature_info[-1]["channels"])

    def features(self, inputs, training=False):  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_features(self, inputs, training=False):
        return self.features(inputs, training=training)[self._feature_info[-1]["key"]]

    def forward_head(self, x, training=False, pre_logits=False):
        if self.global_pool is not None:
            x = self.global_pool(x)
        if self.flatten is not None:
            x = self.flatten(x)
        for fc in self.fc:
            x = fc(x, training=training)
        if pre_logits or self.classifier is None:
            return x
        if self.head_drop is not None:
            x = self.head_drop(x, training=training)
        return self.classifier(x)

    def call(self, inputs, training=False):
        x = self.forward_features(inputs, training=training)
        if not self.include_top:
            return x
        return self.forward_head(x, training=training)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            include_top=self.include_top,
            head_dropout=self.head_dropout,
        )
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def make_variant(name, cls, *, fixed=None, defaults=None, doc=None):
    """A factory for `cls` with some constructor arguments fixed and others re-defaulted.

    The factory's signature (what config validation reads) is `cls.__init__`'s, keyword-only,
    without the fixed arguments and with the new defaults; passing a fixed argument raises
    TypeError. The model it returns is a plain `cls`, whose `get_config()` round-trips through
    `cls.from_config`. `factory.model_class` and `factory.fixed_arguments` say what it is.
    """
    fixed = dict(fixed or {})
    defaults = dict(defaults or {})
    signature = inspect.signature(cls.__init__)
    unknown = sorted((set(fixed) | set(defaults)) - set(signature.parameters))
    if unknown:
        raise TypeError(f"{name}: {cls.__name__} has no argument {', '.join(unknown)}")
    params = []
    for param in list(signature.parameters.values())[1:]:
        if param.name in fixed:
            continue
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            params.append(param)
            continue
        default = defaults.get(param.name, param.default)
        params.append(param.replace(kind=inspect.Parameter.KEYWORD_ONLY, default=default))

    def factory(**kwargs):
        clash = sorted(set(kwargs) & set(fixed))
        if clash:
            raise TypeError(f"{name}: {', '.join(clash)} is fixed by the variant")
        return cls(**{**defaults, **kwargs, **fixed})

    fixed_text = ", ".join(f"{k}={v!r}" for k, v in fixed.items())
    factory.__name__ = factory.__qualname__ = name
    factory.__module__ = cls.__module__
    factory.__signature__ = inspect.Signature(params)
    factory.__doc__ = (doc or f"{cls.__name__} with {fixed_text}.") + (
        f"\n\nReturns `{cls.__name__}({fixed_text}, ...)`; see `{cls.__name__}` for the arguments."
    )
    factory.model_class = cls
    factory.fixed_arguments = dict(fixed)
    return factory


def register_variant(name, cls, *, fixed=None, defaults=None, doc=None):
    """`make_variant(...)`, registered as model `name` (`@register_model`); returns it."""
    factory = make_variant(name, cls, fixed=fixed, defaults=defaults, doc=doc)
    register_model(name)(factory)
    return factory
