"""Multi-task networks of NDDR-CNN and its baselines, all one class: `MultiTaskNet`.

One tower per task (the same backbone, cut into stages, `towers.py`), one head per task, and
between the stages either nothing (independent single-task networks), NDDR layers (NDDR-CNN),
or cross-stitch units. `shared_stages` > 0 shares the first stages between all tasks (the
"multi-task" baseline of Tables 4-6 shares every conv stage: `shared_stages` = all of them).
`shortcut` adds NDDR-CNN-Shortcut's per-task 1x1 reduction of all stages' (resized, concatenated)
outputs in front of the head (spec B.2.3).

Call: normalised images [B, H, W, C] -> {task: head output} (e.g. `segmentation` logits and
`normals` at output stride 8). Variable paths name their role, for learning-rate groups:
`.../nddr<k>/...` (NDDR layers), `.../nddr_shortcut_<task>/...` (the shortcut of NDDR-CNN-
Shortcut; "nddr" variables get the x100 rate in the official code), `.../cross_stitch<k>/...`,
`.../fc8.../` (the logits layers, x10 in the official code).

Registered models (constructor arguments: see `MultiTaskNet`):
- `multi_task_net`: everything configurable (the small configs).
- `nddr_vgg16`, `nddr_vgg16_shortcut`, `nddr_resnet101`: NDDR-CNN on DeepLab-LargeFOV VGG-16 (+
  Shortcut) and on DeepLab ResNet-101 (ASPP head), two tasks by default (segmentation 40 classes,
  normals 3).
- `single_task_vgg16`, `multi_task_vgg16` (shared-bottom), `cross_stitch_vgg16`: the baselines.
Image-level task pairs (age/gender) use `multi_task_net` with `head: classifier` and
`output_stride: null` (then the last VGG stage has no DeepLab average pool).
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
import tensorflow as tf

from garden.errors import ConfigError, unknown_choice
from garden.methods.nddr.checkpoints import load_single_task_weights
from garden.methods.nddr.layers import INITS, NDDR, CrossStitch
from garden.methods.nddr.towers import BACKBONES, HEAD_TYPES, stage_layers
from garden.nn.layers import ConvBN, make_variant
from garden.registry import register_model

FUSIONS = ("none", "nddr", "cross_stitch")
VGG16_BLOCKS = (2, 2, 3, 3, 3)
VGG16_WIDTHS = (64, 128, 256, 512, 512)
RESNET101_BLOCKS = (3, 4, 23, 3)
RESNET_WIDTHS = (64, 128, 256, 512)
NYU_TASKS = {"segmentation": 40, "normals": 3}


@keras.saving.register_keras_serializable(package="garden")
class MultiTaskNet(keras.Model):
    """K task towers with optional layerwise fusion.

    Args:
        tasks: {task name: output channels}, e.g. {"segmentation": 40, "normals": 3}; the order
            is the tasks' order in the fusion layers.
        backbone: "vgg" (DeepLab-LargeFOV VGG stages) or "resnet" (stem + residual stages).
        blocks_per_stage, stage_widths: the backbone's stages (VGG-16 / ResNet-101 by default
            for the backbone chosen); `width_multiplier` scales every width (small configs).
        stem_width, block_type: ResNet only.
        batch_norm: BN after every VGG convolution (the official NDDR code; spec B.2.3).
        output_stride: 8 (DeepLab) or None (no dilation, e.g. classification towers).
        head: "largefov", "aspp" or "classifier"; `head_kwargs` go to its constructor (e.g.
            {"width": 1024, "dilation": 12} or {"pool": "flatten", "hidden": [4096, 4096]}).
        fusion: "none", "nddr" or "cross_stitch"; applied after every stage whose towers are
            separate (NDDR-CNN: after pool1..pool5).
        nddr_init, alpha, beta: the NDDR (and cross-stitch) initialisation (Eq. 3; Xavier ablation).
        shared_stages: the number of leading stages shared by all tasks (shared-bottom baseline).
        shortcut: NDDR-CNN-Shortcut (per-task concat of every stage's fused output, resized to the
            last one, 1x1 conv-BN-ReLU to `shortcut_channels`).
        init_checkpoints: {task: workdir of a trained single-task run}: on the model's first eager
            call, that task's tower and head are loaded from the run's best checkpoint (the paper's
            two-stage training, spec B.3 "Initialization order"). The runs must exist whenever
            the model is built from its config (training, --mode eval/export).
    """

    def __init__(self, tasks: Mapping[str, int] | None = None, backbone: str = "vgg", blocks_per_stage=None,
                 stage_widths=None, width_multiplier: float = 1.0, stem_width: int = 64,
                 block_type: str = "bottleneck", batch_norm: bool = True, output_stride: int | None = 8,
                 head: str = "largefov", head_kwargs: Mapping | None = None, fusion: str = "nddr",
                 nddr_init: str = "diagonal", alpha: float = 0.9, beta: float = 0.1, shared_stages: int = 0,
                 shortcut: bool = False, shortcut_channels: int = 512,
                 init_checkpoints: Mapping[str, str] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.tasks = {str(k): int(v) for k, v in dict(tasks or NYU_TASKS).items()}
        if not self.tasks:
            raise ConfigError("model.tasks: give at least one task, e.g. {segmentation: 13, normals: 3}")
        for name, value, valid in (("backbone", backbone, BACKBONES), ("head", head, HEAD_TYPES),
                                   ("fusion", fusion, FUSIONS), ("nddr_init", nddr_init, INITS)):
            if value not in valid:
                raise ConfigError(f"model.{name}: " + unknown_choice(name, value, valid))
        self.backbone = backbone
        default_blocks, default_widths = ((VGG16_BLOCKS, VGG16_WIDTHS) if backbone == "vgg"
                                          else (RESNET101_BLOCKS, RESNET_WIDTHS))
        self.blocks_per_stage = [int(n) for n in (blocks_per_stage or default_blocks)]
        self.stage_widths = [int(w) for w in (stage_widths or default_widths)]
        if len(self.blocks_per_stage) != len(self.stage_widths):
            raise ConfigError(f"model.stage_widths: {len(self.stage_widths)} widths for "
                              f"{len(self.blocks_per_stage)} stages")
        self.width_multiplier = float(width_multiplier)
        self.stem_width, self.block_type = int(stem_width), block_type
        self.batch_norm = bool(batch_norm)
        self.output_stride = None if output_stride is None else int(output_stride)
        self.head, self.head_kwargs = head, dict(head_kwargs or {})
        self.fusion, self.nddr_init = fusion, nddr_init
        self.alpha, self.beta = float(alpha), float(beta)
        self.shortcut, self.shortcut_channels = bool(shortcut), int(shortcut_channels)
        self.init_checkpoints = {str(k): str(v) for k, v in dict(init_checkpoints or {}).items()}
        unknown = sorted(set(self.init_checkpoints) - set(self.tasks))
        if unknown:
            raise ConfigError(f"model.init_checkpoints: {unknown} are not tasks of the model "
                              f"({', '.join(self.tasks)})")
        names = list(self.tasks)
        if fusion != "none" and len(names) < 2:
            raise ConfigError(f"model.fusion: {fusion!r} needs at least 2 tasks, got {names}; use fusion: none")

        def scaled(w):
            return max(1, int(round(w * self.width_multiplier)))

        widths = [scaled(w) for w in self.stage_widths]
        # The 3x3/1 average pool after pool5 belongs to DeepLab-LargeFOV (output stride 8).
        tower_kwargs = dict(blocks_per_stage=self.blocks_per_stage, stage_widths=widths,
                            output_stride=self.output_stride, batch_norm=self.batch_norm,
                            average_pool=self.output_stride is not None,
                            stem_width=scaled(self.stem_width), block_type=self.block_type, dtype=self.dtype_policy)
        probe, self.stage_channels = stage_layers(backbone, **tower_kwargs, prefix="probe_")
        num_stages = len(probe)
        del probe
        self.shared_stages = int(shared_stages)
        if not 0 <= self.shared_stages <= num_stages:
            raise ConfigError(f"model.shared_stages must be in [0, {num_stages}], got {shared_stages}")
        if self.shared_stages == num_stages and fusion != "none":
            raise ConfigError("model.fusion: nothing to fuse when every stage is shared (shared_stages = "
                              f"{num_stages}); use fusion: none")

        shared, _ = stage_layers(backbone, **tower_kwargs, prefix="shared_")
        self.shared = shared[:self.shared_stages]
        self.towers = {}
        for name in names:
            layers, _ = stage_layers(backbone, **tower_kwargs, prefix=f"{name}_")
            self.towers[name] = layers[self.shared_stages:]
        policy = self.dtype_policy
        self.fusions = []
        for k in range(self.shared_stages, num_stages):
            if fusion == "nddr":
                self.fusions.append(NDDR(len(names), init=nddr_init, alpha=self.alpha, beta=self.beta,
                                         dtype=policy, name=f"nddr{k + 1}"))
            elif fusion == "cross_stitch":
                self.fusions.append(CrossStitch(len(names), alpha=self.alpha, beta=self.beta, dtype=policy,
                                                name=f"cross_stitch{k + 1}"))
        self.shortcuts = {}
        if self.shortcut:
            prefix = "nddr_shortcut" if fusion == "nddr" else "shortcut"
            for name in names:
                self.shortcuts[name] = ConvBN(self.shortcut_channels, 1, dtype=policy, name=f"{prefix}_{name}")
        head_cls = HEAD_TYPES[head]
        try:
            self.heads = {name: head_cls(outputs, **self.head_kwargs, dtype=policy, name=f"{name}_head")
                          for name, outputs in self.tasks.items()}
        except TypeError as error:
            raise ConfigError(f"model.head_kwargs: {error}") from None
        self._initialised_from_checkpoints = False

    @property
    def num_stages(self) -> int:
        return len(self.stage_channels)

    # -- forward ------------------------------------------------------------------------------

    def stage_outputs(self, inputs, training=False):
        """{task: [output of every stage, after fusion]} (shared stages appear in every task's list)."""
        names = list(self.tasks)
        outputs = {name: [] for name in names}
        x = inputs
        for stage in self.shared:
            x = stage(x, training=training)
            for name in names:
                outputs[name].append(x)
        features = {name: x for name in names}
        for k in range(self.num_stages - self.shared_stages):
            features = {name: self.towers[name][k](features[name], training=training) for name in names}
            if self.fusions:
                fused = self.fusions[k]([features[name] for name in names], training=training)
                features = dict(zip(names, fused))
            for name in names:
                outputs[name].append(features[name])
        return outputs

    def _shortcut(self, name, maps, training):
        last = maps[-1]
        size = tf.shape(last)[1:3]
        resized = [m if m.shape[1:3] == last.shape[1:3] and m.shape[1] is not None
                   else tf.cast(tf.image.resize(m, size, method="bilinear"), last.dtype) for m in maps]
        return self.shortcuts[name](keras.ops.concatenate(resized, axis=-1), training=training)

    def call(self, inputs, training=False):
        stages = self.stage_outputs(inputs, training=training)
        out = {}
        for name in self.tasks:
            x = self._shortcut(name, stages[name], training) if self.shortcut else stages[name][-1]
            out[name] = self.heads[name](x, training=training)
        return out

    # -- building and the two-stage initialisation ------------------------------------------------

    def build(self, input_shape):
        # Build every sublayer by running the network once on zeros (its spatial size does not
        # matter for the weights; 64 where the input shape leaves it open).
        shape = [1] + [64 if d is None else int(d) for d in tuple(input_shape)[1:]]
        self.call(tf.zeros(shape, self.compute_dtype), training=False)
        self.built = True

    def __call__(self, *args, **kwargs):
        outputs = super().__call__(*args, **kwargs)
        # The two-stage initialisation runs on the first *eager* call (the trainer and load_task
        # call the task eagerly on a sample batch before anything else). Not in build(): Keras
        # may build a model while tracing a symbolic call, where variable values are deferred and
        # assignments would be lost.
        if self.init_checkpoints and not self._initialised_from_checkpoints and tf.executing_eagerly():
            for name, workdir in self.init_checkpoints.items():
                load_single_task_weights(self, name, workdir)
            self._initialised_from_checkpoints = True
            outputs = super().__call__(*args, **kwargs)
        return outputs

    def task_layers(self, name: str) -> list:
        """The layers that belong to task `name` alone: its tower stages, shortcut and head."""
        layers = list(self.towers[name])
        if name in self.shortcuts:
            layers.append(self.shortcuts[name])
        return layers + [self.heads[name]]

    def get_config(self):
        config = super().get_config()
        config.update(tasks=dict(self.tasks), backbone=self.backbone, blocks_per_stage=list(self.blocks_per_stage),
                      stage_widths=list(self.stage_widths), width_multiplier=self.width_multiplier,
                      stem_width=self.stem_width, block_type=self.block_type, batch_norm=self.batch_norm,
                      output_stride=self.output_stride, head=self.head, head_kwargs=dict(self.head_kwargs),
                      fusion=self.fusion, nddr_init=self.nddr_init, alpha=self.alpha, beta=self.beta,
                      shared_stages=self.shared_stages, shortcut=self.shortcut,
                      shortcut_channels=self.shortcut_channels, init_checkpoints=dict(self.init_checkpoints))
        return config


register_model("multi_task_net")(MultiTaskNet)


def _variant(name, doc, **fixed):
    factory = make_variant(name, MultiTaskNet, fixed=fixed, doc=doc)
    register_model(name)(factory)
    return factory


_VGG = dict(backbone="vgg", blocks_per_stage=VGG16_BLOCKS, stage_widths=VGG16_WIDTHS, head="largefov")
nddr_vgg16 = _variant("nddr_vgg16", "NDDR-CNN on DeepLab-LargeFOV VGG-16 (Table 4).", fusion="nddr", **_VGG)
nddr_vgg16_shortcut = _variant("nddr_vgg16_shortcut", "NDDR-CNN-Shortcut on VGG-16 (Table 6).",
                               fusion="nddr", shortcut=True, **_VGG)
single_task_vgg16 = _variant("single_task_vgg16", "Independent DeepLab-LargeFOV VGG-16s, one per task (Table 4).",
                             fusion="none", **_VGG)
multi_task_vgg16 = _variant("multi_task_vgg16", "Shared conv1-pool5, task-specific fc6-fc8 (Table 4).",
                            fusion="none", shared_stages=5, **_VGG)
cross_stitch_vgg16 = _variant("cross_stitch_vgg16", "Cross-stitch units after pool1..pool5 (Table 4).",
                              fusion="cross_stitch", **_VGG)
nddr_resnet101 = _variant("nddr_resnet101", "NDDR-CNN on DeepLab ResNet-101 with the ASPP head (Table 5).",
                          fusion="nddr", backbone="resnet", blocks_per_stage=RESNET101_BLOCKS,
                          stage_widths=RESNET_WIDTHS, head="aspp")
