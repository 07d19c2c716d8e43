"""The visual-variation network: a garden backbone plus training-only variation heads.

specs/seeds_000_001.md A.2: the category classifier is an ordinary backbone (AlexNet-BN with
fc6/fc7 of 1024, ResNet-50, DenseNet-121); auxiliary heads read hidden layers through the
injection connections I_[1]..I_[5] (variation classification) and/or fc7 (a 32-d pose
embedding). At test time only input -> ... -> category logits is kept, so `backbone` alone is
the deployed model, with exactly the single-task baseline's parameters.

Outputs (a dict with stable names): `logits` (category), `<variation>_logits` per variation
head (the weighted sum of its injections' scores, gamma_i = 1/k, A.2.2), `embedding` when
`embedding_dim > 0`.
"""

from __future__ import annotations

import keras

from garden.errors import ConfigError
from garden.methods.vvl.heads import POOLINGS, InjectionHead
from garden.nn.alexnet import AlexNet
from garden.nn.layers import SymbolicShapes, make_variant
from garden.registry import MODELS, import_all, register_model


# Which hidden layer each injection inj_1..inj_4 reads. The paper's Fig. 4 is not in the text;
# the spec's plausible mapping (A.2.2 [GUESS]) for AlexNet is pool1, pool2, conv3, conv4. For
# the other backbones (ResNet/DenseNet, where the paper only uses I_[5]) inj_1..inj_4 are the
# last four entries of `feature_info` (the outputs of the four stages). inj_5 is always the
# pre-logits vector: AlexNet's fc7, or the global-average-pooled feature of ResNet/DenseNet
# (A.2.4: 2048 x 30 + 30 = 61,470 for ResNet-50).
ALEXNET_INJECTIONS = ("pool1", "pool2", "conv3", "conv4")
TOP_INJECTION = 5
INJECTIONS = (1, 2, 3, 4, 5)


def injection_keys(backbone) -> dict[int, str]:
    """{injection: `features()` key} of inj_1..inj_4 that `backbone` offers (counted back from
    its last feature map, so a 3-stage CIFAR ResNet offers inj_2..inj_4)."""
    if isinstance(backbone, AlexNet):
        return dict(zip(INJECTIONS, ALEXNET_INJECTIONS))
    keys = [info["key"] for info in backbone.feature_info][-4:]
    return {4 - i: key for i, key in enumerate(reversed(keys))}


@keras.saving.register_keras_serializable(package="garden")
class VisualVariationNet(SymbolicShapes, keras.Model):
    """A backbone classifier with auxiliary variation heads used only in training.

    Args:
        backbone: a registered model name (alexnet_bn, resnet50, densenet121, resnet20, ...).
        backbone_kwargs: its constructor arguments (widths, small_inputs, ...).
        num_classes: number of categories (filled in from the data by the trainer).
        variations: {name: number of classes} of the variation classification heads, e.g.
            {pose: 30, lighting: 5}; empty for the single-task baseline I_0.
        injections: the active injections (subset of 1..5); I_[5] = [5] (the paper's best),
            I_[12345] = [1, 2, 3, 4, 5].
        injection_hidden: width of a hidden DenseBN layer in the inj_1..inj_4 transformation
            units (0: a single linear layer; the paper's widths are unknown).
        injection_pooling: "flatten" (the paper's 3-D volume into fc layers) or "average".
        embedding_dim: width of the pose-embedding head on the pre-logits vector (paper: 32,
            1024 x 32 + 32 = 32,800 parameters, A.2.3); 0 for none.
    """

    def __init__(self, backbone="alexnet_bn", backbone_kwargs=None, num_classes=15, variations=None,
                 injections=(TOP_INJECTION,), injection_hidden=0, injection_pooling="flatten",
                 embedding_dim=0, **kwargs):
        super().__init__(**kwargs)
        self.backbone_name = str(backbone)
        self.backbone_kwargs = dict(backbone_kwargs or {})
        self.num_classes = int(num_classes)
        self.variations = {str(k): int(v) for k, v in dict(variations or {}).items()}
        self.injections = sorted({int(i) for i in injections})
        self.injection_hidden = int(injection_hidden)
        self.injection_pooling = str(injection_pooling)
        self.embedding_dim = int(embedding_dim)
        self._check()

        for fixed in ("num_classes", "include_top"):
            if fixed in self.backbone_kwargs:
                raise ConfigError(f"model.backbone_kwargs.{fixed}: set by the visual-variation model; "
                                  f"use model.{fixed} instead" if fixed == "num_classes" else
                                  f"model.backbone_kwargs.{fixed}: the model needs the backbone's top")
        if self.backbone_name not in MODELS:
            import_all()  # backbones register when their module is imported
        factory = MODELS.get(self.backbone_name)
        self.backbone = factory(num_classes=self.num_classes, include_top=True, dtype=self.dtype_policy,
                                **self.backbone_kwargs)
        keys = injection_keys(self.backbone)
        unavailable = [i for i in self.injections if i != TOP_INJECTION and i not in keys]
        if unavailable:
            raise ConfigError(f"model.injections: backbone {self.backbone_name!r} has no hidden layer for "
                              f"injection(s) {unavailable}; available: {sorted(keys) + [TOP_INJECTION]}")
        self._tap_keys = {i: keys[i] for i in self.injections if i != TOP_INJECTION}
        # One list of transformation units per variation, in the order of `self.injections`.
        self.variation_heads = [
            [InjectionHead(units, hidden=0 if i == TOP_INJECTION else self.injection_hidden,
                           pooling=self.injection_pooling, dtype=self.dtype_policy,
                           name=f"{name}_inj{i}")
             for i in self.injections]
            for name, units in self.variations.items()
        ]
        self.embedding_head = (keras.layers.Dense(self.embedding_dim, dtype=self.dtype_policy, name="embedding")
                               if self.embedding_dim else None)

    def _check(self):
        if self.num_classes < 1:
            raise ConfigError(f"model.num_classes must be >= 1, got {self.num_classes}")
        bad = [i for i in self.injections if i not in INJECTIONS]
        if bad or (self.variations and not self.injections):
            raise ConfigError(f"model.injections: {bad or '[]'} is not valid; choose from 1, 2, 3, 4, 5 "
                              "(I_[5] = [5], I_[12345] = [1, 2, 3, 4, 5])")
        for name, units in self.variations.items():
            if units < 2:
                raise ConfigError(f"model.variations.{name}: needs >= 2 classes, got {units}")
            if name in ("logits", "embedding"):
                raise ConfigError(f"model.variations.{name}: reserved output name; choose another")
        if self.injection_pooling not in POOLINGS:
            raise ConfigError(f"model.injection_pooling: unknown {self.injection_pooling!r}; valid: "
                              f"{', '.join(POOLINGS)}")
        if self.injection_hidden < 0 or self.embedding_dim < 0:
            raise ConfigError("model.injection_hidden and model.embedding_dim must be >= 0")

    def build(self, input_shape):
        # The backbone is used through features()/forward_head(), which do not mark it built;
        # build it as a model of its own so that it can be counted, saved and exported alone.
        if not self.backbone.built:
            self.backbone.build(input_shape)
        super().build(input_shape)

    @property
    def variation_names(self) -> list[str]:
        return list(self.variations)

    def call(self, inputs, training=False):
        backbone = self.backbone
        feats = backbone.features(inputs, training=training)
        final = feats[backbone.feature_info[-1]["key"]]
        pre_logits = backbone.forward_head(final, training=training, pre_logits=True)
        x = pre_logits
        if backbone.head_drop is not None:
            x = backbone.head_drop(x, training=training)
        outputs = {"logits": backbone.classifier(x)}
        taps = {i: feats[key] for i, key in self._tap_keys.items()}
        taps[TOP_INJECTION] = pre_logits
        gamma = 1.0 / max(len(self.injections), 1)  # "we distribute the weights equally" (A.2.2)
        for name, heads in zip(self.variations, self.variation_heads):
            scores = [head(taps[i], training=training) for i, head in zip(self.injections, heads)]
            total = scores[0] if len(scores) == 1 else keras.ops.sum(keras.ops.stack(scores), axis=0) * gamma
            outputs[f"{name}_logits"] = total
        if self.embedding_head is not None:
            outputs["embedding"] = self.embedding_head(pre_logits)
        return outputs

    def deployed_model(self) -> keras.Model:
        """The model that is exported: the backbone classifier, auxiliary heads stripped."""
        return self.backbone

    def get_config(self):
        config = super().get_config()
        config.update(backbone=self.backbone_name, backbone_kwargs=dict(self.backbone_kwargs),
                      num_classes=self.num_classes, variations=dict(self.variations),
                      injections=list(self.injections), injection_hidden=self.injection_hidden,
                      injection_pooling=self.injection_pooling, embedding_dim=self.embedding_dim)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)


register_model("vvl")(VisualVariationNet)


def _variant(name: str, backbone: str, doc: str):
    factory = make_variant(name, VisualVariationNet, fixed={"backbone": backbone}, doc=doc)
    register_model(name)(factory)
    return factory


vvl_alexnet = _variant("vvl_alexnet", "alexnet_bn",
                       "AlexNet-BN/PReLU (fc6/fc7 1024) with variation heads (seed 000, A.2.1-A.2.3).")
vvl_resnet50 = _variant("vvl_resnet50", "resnet50",
                        "ResNet-50 with a pose head on the pooled 2048-d feature (seed 000, A.2.4).")
vvl_densenet121 = _variant("vvl_densenet121", "densenet121",
                           "DenseNet-121 with a pose head on the pooled 1024-d feature (seed 000, A.2.4).")
