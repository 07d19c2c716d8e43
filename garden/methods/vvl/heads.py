"""The auxiliary heads of visual variation learning: injection transformation units.

specs/seeds_000_001.md A.2.2: injections inj_1..inj_4 connect a hidden 3-D volume to the
variation loss through "transformation units" of "one or more fully-connected layers" mapping
to an n_var vector; inj_5 is a single linear layer fc8-var on fc7 (1024 -> 30 = 30,750
parameters, the paper's "31k"). The widths of inj_1..inj_4 are not stated, so `hidden` is a
choice (0: one linear layer, the spec's A.7 "flatten -> Dense(n_var)").
"""

from __future__ import annotations

import keras

from garden.nn.layers import DenseBN

POOLINGS = ("flatten", "average")


@keras.saving.register_keras_serializable(package="garden")
class InjectionHead(keras.layers.Layer):
    """One transformation unit t_i: [flatten | global average pool] -> [DenseBN(hidden)] -> Dense(units).

    On a vector input (fc7, the pooled ResNet/DenseNet feature) only the final Dense runs, so
    inj_5 is exactly fc8-var. `pooling="flatten"` keeps the paper's "3D input volume" (the
    parameter count grows with the map size, the spec's 175M for I_[12345]); "average" is a
    cheaper choice for large maps.
    """

    def __init__(self, units, hidden=0, pooling="flatten", activation="prelu", **kwargs):
        super().__init__(**kwargs)
        if pooling not in POOLINGS:
            raise ValueError(f"unknown injection pooling {pooling!r}; valid: {', '.join(POOLINGS)}")
        self.units = int(units)
        self.hidden = int(hidden)
        self.pooling = pooling
        self.activation = activation
        policy = self.dtype_policy
        self.flatten = keras.layers.Flatten(dtype=policy, name="flatten")
        self.pool = keras.layers.GlobalAveragePooling2D(dtype=policy, name="pool")
        self.fc = DenseBN(self.hidden, activation=activation, dtype=policy, name="fc") if self.hidden else None
        self.out = keras.layers.Dense(self.units, dtype=policy, name="scores")

    def build(self, input_shape):
        shape = tuple(input_shape)
        if len(shape) == 4:
            shape = (shape[0], shape[1] * shape[2] * shape[3]) if self.pooling == "flatten" else (shape[0], shape[3])
        if self.fc is not None:
            self.fc.build(shape)
            shape = (shape[0], self.hidden)
        self.out.build(shape)

    def call(self, inputs, training=False):
        x = inputs
        if len(x.shape) == 4:
            x = self.flatten(x) if self.pooling == "flatten" else self.pool(x)
        if self.fc is not None:
            x = self.fc(x, training=training)
        return self.out(x)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, hidden=self.hidden, pooling=self.pooling, activation=self.activation)
        return config
