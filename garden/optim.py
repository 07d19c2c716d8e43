"""Optimisers and learning-rate schedules from the `trainer` section of a config.

Schedules are `keras.optimizers.schedules.LearningRateSchedule` subclasses with `get_config`
(registered for serialisation under the package "garden"), evaluated at the optimiser's step:

    constant    lr
    step        lr * decay_factor ** (number of boundaries <= step)
    cosine      alpha*lr + (1 - alpha)*lr * (1 + cos(pi * progress)) / 2
    poly        alpha*lr + (1 - alpha)*lr * (1 - progress) ** power
    warm-up     any of the above times min(1, (step + 1) / warmup_steps): a linear ramp from ~0

`progress` runs from 0 at the end of the warm-up to 1 at the last step, so the peak rate is
reached exactly when the warm-up ends and the decay spans the rest of the run.

Optimisers (Keras 3 natives): SGD (momentum, Nesterov), Adam, AdamW. Weight decay is Keras'
decoupled decay (`w -= lr * wd * w` each step); one-dimensional variables (batch-norm scales and
offsets, biases) are left out of it by default.

Two things differ from plain Keras, both for distributed training:

* Gradient clipping (`clipnorm`, `clipvalue`, `global_clipnorm`) is applied to the gradients
  *after* they are summed over the replicas. Keras 3 clips inside `Optimizer.apply`, before the
  all-reduce, i.e. each replica's partial gradient, so a clipped run would depend on the number
  of replicas.
* Per-variable-group learning-rate multipliers (`trainer.lr_multipliers`, e.g. NDDR's x100 on
  its fusion layers) use `keras.optimizers.MultiOptimizer`: one inner optimiser per group with
  the schedule scaled by the multiplier. The first pattern that `re.search`es a variable's path
  decides its group. `global_clipnorm` then clips all groups jointly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import keras
import tensorflow as tf
from keras import ops

from garden.errors import ConfigError

__all__ = [
    "ConstantSchedule", "StepSchedule", "CosineSchedule", "PolySchedule", "LinearWarmup",
    "ScaledSchedule", "SGD", "Adam", "AdamW", "GroupedOptimizer", "PatternOptimizerMap",
    "build_schedule", "build_optimizer", "learning_rates", "total_steps",
]

_PACKAGE = "garden"


# ----------------------------------------------------------------------------------------------
# schedules
# ----------------------------------------------------------------------------------------------


def _step(step):
    return ops.cast(step, "float32")


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ConstantSchedule(keras.optimizers.schedules.LearningRateSchedule):
    def __init__(self, learning_rate: float):
        self.learning_rate = float(learning_rate)

    def __call__(self, step):
        return ops.convert_to_tensor(self.learning_rate, "float32") + 0.0 * _step(step)

    def get_config(self):
        return {"learning_rate": self.learning_rate}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class StepSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Multiply the rate by `decay_factor` at each boundary (steps, strictly increasing)."""

    def __init__(self, learning_rate: float, boundaries: Sequence[int], decay_factor: float = 0.1):
        self.learning_rate = float(learning_rate)
        self.boundaries = [int(b) for b in boundaries]
        self.decay_factor = float(decay_factor)

    def __call__(self, step):
        step = _step(step)
        passed = ops.zeros((), "float32")
        for boundary in self.boundaries:
            passed = passed + ops.cast(ops.greater_equal(step, float(boundary)), "float32")
        return self.learning_rate * ops.power(ops.convert_to_tensor(self.decay_factor, "float32"), passed)

    def get_config(self):
        return {"learning_rate": self.learning_rate, "boundaries": list(self.boundaries),
                "decay_factor": self.decay_factor}


def _progress(step, offset: int, decay_steps: int):
    return ops.clip((_step(step) - float(offset)) / float(max(decay_steps, 1)), 0.0, 1.0)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CosineSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Cosine decay from `learning_rate` (at step `offset`) to `alpha * learning_rate` over `decay_steps`."""

    def __init__(self, learning_rate: float, decay_steps: int, alpha: float = 0.0, offset: int = 0):
        self.learning_rate = float(learning_rate)
        self.decay_steps = int(decay_steps)
        self.alpha = float(alpha)
        self.offset = int(offset)

    def __call__(self, step):
        progress = _progress(step, self.offset, self.decay_steps)
        cosine = 0.5 * (1.0 + ops.cos(math.pi * progress))
        return self.learning_rate * (self.alpha + (1.0 - self.alpha) * cosine)

    def get_config(self):
        return {"learning_rate": self.learning_rate, "decay_steps": self.decay_steps, "alpha": self.alpha,
                "offset": self.offset}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PolySchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Polynomial decay ("poly", DeepLab): lr * (1 - progress) ** power, floored at alpha * lr."""

    def __init__(self, learning_rate: float, decay_steps: int, power: float = 1.0, alpha: float = 0.0,
                 offset: int = 0):
        self.learning_rate = float(learning_rate)
        self.decay_steps = int(decay_steps)
        self.power = float(power)
        self.alpha = float(alpha)
        self.offset = int(offset)

    def __call__(self, step):
        progress = _progress(step, self.offset, self.decay_steps)
        return self.learning_rate * (self.alpha + (1.0 - self.alpha) * ops.power(1.0 - progress, self.power))

    def get_config(self):
        return {"learning_rate": self.learning_rate, "decay_steps": self.decay_steps, "power": self.power,
                "alpha": self.alpha, "offset": self.offset}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """`schedule(step) * min(1, (step + 1) / warmup_steps)`: a linear ramp in front of any schedule."""

    def __init__(self, schedule, warmup_steps: int):
        if isinstance(schedule, dict):
            schedule = keras.saving.deserialize_keras_object(schedule)
        self.schedule = schedule
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        ramp = ops.minimum(1.0, (_step(step) + 1.0) / float(max(self.warmup_steps, 1)))
        return self.schedule(step) * ramp

    def get_config(self):
        return {"schedule": keras.saving.serialize_keras_object(self.schedule), "warmup_steps": self.warmup_steps}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ScaledSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """`multiplier * schedule(step)`: the rate of a variable group with a learning-rate multiplier."""

    def __init__(self, schedule, multiplier: float):
        if isinstance(schedule, dict):
            schedule = keras.saving.deserialize_keras_object(schedule)
        self.schedule = schedule
        self.multiplier = float(multiplier)

    def __call__(self, step):
        return self.schedule(step) * self.multiplier

    def get_config(self):
        return {"schedule": keras.saving.serialize_keras_object(self.schedule), "multiplier": self.multiplier}


def total_steps(trainer_config, steps_per_epoch: int) -> int:
    return int(trainer_config.epochs) * int(steps_per_epoch)


def build_schedule(schedule_config, learning_rate: float, *, steps_per_epoch: int, total_steps: int):
    """The `trainer.schedule` section as a LearningRateSchedule (epochs converted to steps)."""
    cfg = schedule_config
    if cfg.warmup_steps is not None:
        warmup = int(cfg.warmup_steps)
    else:
        warmup = int(round(float(cfg.warmup_epochs) * steps_per_epoch))
    if warmup >= total_steps and warmup > 0:
        raise ConfigError(f"trainer.schedule: the warm-up ({warmup} steps) is not shorter than the run "
                          f"({total_steps} steps)")
    decay_steps = max(total_steps - warmup, 1)
    if cfg.name == "constant":
        schedule = ConstantSchedule(learning_rate)
    elif cfg.name == "step":
        if cfg.boundary_steps:
            boundaries = [int(b) for b in cfg.boundary_steps]
        else:
            boundaries = [int(round(float(b) * steps_per_epoch)) for b in cfg.boundaries]
        schedule = StepSchedule(learning_rate, boundaries, cfg.decay_factor)
    elif cfg.name == "cosine":
        schedule = CosineSchedule(learning_rate, decay_steps, alpha=cfg.alpha, offset=warmup)
    elif cfg.name == "poly":
        schedule = PolySchedule(learning_rate, decay_steps, power=cfg.power, alpha=cfg.alpha, offset=warmup)
    else:  # the config's Literal makes this unreachable
        raise ConfigError(f"trainer.schedule.name: unknown schedule {cfg.name!r}; valid: constant, step, cosine, poly")
    if warmup > 0:
        schedule = LinearWarmup(schedule, warmup)
    return schedule


# ----------------------------------------------------------------------------------------------
# optimisers: clipping after the cross-replica sum
# ----------------------------------------------------------------------------------------------


def _clip(grads, clipnorm, clipvalue, global_clipnorm):
    if global_clipnorm is not None:
        present = [g for g in grads if g is not None]
        clipped, _ = tf.clip_by_global_norm(present, global_clipnorm)
        it = iter(clipped)
        return [None if g is None else next(it) for g in grads]
    if clipnorm is not None:
        return [None if g is None else tf.clip_by_norm(g, clipnorm) for g in grads]
    if clipvalue is not None:
        return [None if g is None else tf.clip_by_value(g, -clipvalue, clipvalue) for g in grads]
    return grads


class _ReducedClipping:
    """Mixin for a Keras TF optimiser: clip after the all-reduce, not per replica.

    The clipping arguments are intercepted (Keras gets None); `_backend_update_step` sums the
    gradients over the replicas (as Keras' TF optimiser does), clips the sums, then updates.
    `_grads_already_reduced` is set by `GroupedOptimizer` when it has summed (and jointly
    clipped) the gradients of all groups itself.
    """

    def __init__(self, *args, clipnorm=None, clipvalue=None, global_clipnorm=None, **kwargs):
        given = [n for n, v in (("clipnorm", clipnorm), ("clipvalue", clipvalue), ("global_clipnorm", global_clipnorm))
                 if v is not None]
        if len(given) > 1:
            raise ValueError(f"only one of clipnorm, clipvalue, global_clipnorm may be set (got {', '.join(given)})")
        super().__init__(*args, **kwargs)
        self._garden_clipnorm = clipnorm
        self._garden_clipvalue = clipvalue
        self._garden_global_clipnorm = global_clipnorm
        self._grads_already_reduced = False

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        variables = [v.value if isinstance(v, keras.Variable) else v for v in trainable_variables]
        grads_and_vars = list(zip(grads, variables))
        if not self._grads_already_reduced:
            grads_and_vars = self._all_reduce_sum_gradients(grads_and_vars)
        grads = _clip([g for g, _ in grads_and_vars], self._garden_clipnorm, self._garden_clipvalue,
                      self._garden_global_clipnorm)
        tf.__internal__.distribute.interim.maybe_merge_call(
            self._distributed_tf_update_step, self._distribution_strategy, list(zip(grads, variables)),
            learning_rate)

    def get_config(self):
        config = super().get_config()
        config.update(clipnorm=self._garden_clipnorm, clipvalue=self._garden_clipvalue,
                      global_clipnorm=self._garden_global_clipnorm)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SGD(_ReducedClipping, keras.optimizers.SGD):
    """keras.optimizers.SGD with clipping after the cross-replica gradient sum."""


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Adam(_ReducedClipping, keras.optimizers.Adam):
    """keras.optimizers.Adam with clipping after the cross-replica gradient sum."""


@keras.saving.register_keras_serializable(package=_PACKAGE)
class AdamW(_ReducedClipping, keras.optimizers.AdamW):
    """keras.optimizers.AdamW with clipping after the cross-replica gradient sum."""


# ----------------------------------------------------------------------------------------------
# variable groups
# ----------------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PatternOptimizerMap(keras.optimizers.OptimizerMap):
    """OptimizerMap whose keys are regular expressions *searched* in a variable's path, first match wins.

    (Keras' OptimizerMap full-matches and refuses a path that matches two patterns.)
    """

    def __getitem__(self, key):
        if key in self._optimizer_map:
            return self._optimizer_map[key]
        for pattern, optimizer in self._optimizer_map.items():
            if re.search(pattern, key):
                return optimizer
        return self.default_optimizer


@keras.saving.register_keras_serializable(package=_PACKAGE)
class GroupedOptimizer(keras.optimizers.MultiOptimizer):
    """keras.optimizers.MultiOptimizer with an optional joint `global_clipnorm` over all groups.

    The gradients are summed over the replicas once here, clipped by their global norm, and
    the inner optimisers (garden optimisers) are told not to sum them again.
    """

    def __init__(self, optimizer_map, global_clipnorm=None, loss_scale_factor=None, name=None):
        super().__init__(optimizer_map, loss_scale_factor=loss_scale_factor, name=name)
        self._joint_global_clipnorm = global_clipnorm

    def apply(self, grads, trainable_variables=None):
        if self._joint_global_clipnorm is None or len(grads) == 0:
            return super().apply(grads, trainable_variables)
        if trainable_variables is None:
            trainable_variables = self._trainable_variables
        trainable_variables = list(trainable_variables)
        grads = list(grads)
        present = [i for i, g in enumerate(grads) if g is not None]
        context = tf.distribute.get_replica_context()
        summed = [grads[i] for i in present]
        if context is not None and summed:
            summed = context.all_reduce(tf.distribute.ReduceOp.SUM, summed)
        if self.loss_scale_factor is not None:
            # Unscale before measuring the norm; the inner optimisers must not unscale again.
            summed = [g / self.loss_scale_factor for g in summed]
        summed, _ = tf.clip_by_global_norm(summed, self._joint_global_clipnorm)
        for i, g in zip(present, summed):
            grads[i] = g
        saved_scale = self.loss_scale_factor
        for opt in self.optimizers:
            opt._grads_already_reduced = True
            opt.loss_scale_factor = None
        try:
            return super().apply(grads, trainable_variables)
        finally:
            for opt in self.optimizers:
                opt._grads_already_reduced = False
                opt.loss_scale_factor = saved_scale

    def get_config(self):
        config = super().get_config()
        config["global_clipnorm"] = self._joint_global_clipnorm
        return config


# ----------------------------------------------------------------------------------------------
# from config
# ----------------------------------------------------------------------------------------------


def _make(optimizer_config, learning_rate, *, name: str | None, clip: dict):
    cfg = optimizer_config
    common = dict(learning_rate=learning_rate, weight_decay=(cfg.weight_decay or None), **clip)
    if name:
        common["name"] = name
    if cfg.name == "sgd":
        return SGD(momentum=cfg.momentum, nesterov=cfg.nesterov, **common)
    if cfg.name == "adam":
        return Adam(beta_1=cfg.beta_1, beta_2=cfg.beta_2, epsilon=cfg.epsilon, **common)
    if cfg.name == "adamw":
        # AdamW requires a weight_decay value (0 disables it).
        common["weight_decay"] = float(cfg.weight_decay)
        return AdamW(beta_1=cfg.beta_1, beta_2=cfg.beta_2, epsilon=cfg.epsilon, **common)
    raise ConfigError(f"trainer.optimizer.name: unknown optimizer {cfg.name!r}; valid: sgd, adam, adamw")


def _no_decay(variables) -> list:
    """Variables left out of weight decay: one-dimensional ones (norm scales/offsets, biases)."""
    return [v for v in variables if len(v.shape) <= 1]


def build_optimizer(trainer_config, *, steps_per_epoch: int, variables: Sequence | None = None,
                    decay_norm_and_bias: bool | None = None):
    """The optimiser of `trainer_config` (its `optimizer`, `schedule` and `lr_multipliers`).

    `variables` (the model's trainable variables, built) lets weight decay skip the
    one-dimensional ones (batch-norm, biases) unless `decay_norm_and_bias` (default: the
    config's `optimizer.decay_norm_and_bias` if it has one, else False).
    """
    opt_cfg = trainer_config.optimizer
    schedule = build_schedule(trainer_config.schedule, opt_cfg.learning_rate, steps_per_epoch=steps_per_epoch,
                              total_steps=total_steps(trainer_config, steps_per_epoch))
    if decay_norm_and_bias is None:
        decay_norm_and_bias = bool(getattr(opt_cfg, "decay_norm_and_bias", False))
    clip = dict(clipnorm=opt_cfg.clipnorm, clipvalue=opt_cfg.clipvalue, global_clipnorm=opt_cfg.global_clipnorm)
    multipliers = list(trainer_config.lr_multipliers or [])

    def finish(optimizer):
        if opt_cfg.weight_decay and variables is not None and not decay_norm_and_bias:
            optimizer.exclude_from_weight_decay(var_list=_no_decay(variables))
        return optimizer

    if not multipliers:
        return finish(_make(opt_cfg, schedule, name=None, clip=clip))

    # One inner optimiser per group; a joint global norm is clipped by the GroupedOptimizer.
    inner_clip = dict(clip, global_clipnorm=None)
    default = finish(_make(opt_cfg, schedule, name=f"{opt_cfg.name}_default", clip=inner_clip))
    groups = {}
    for i, group in enumerate(multipliers):
        if group.pattern in groups:
            raise ConfigError(f"trainer.lr_multipliers.{i}.pattern: {group.pattern!r} is given twice")
        scaled = ScaledSchedule(schedule, group.multiplier)
        groups[group.pattern] = finish(_make(opt_cfg, scaled, name=f"{opt_cfg.name}_group{i}", clip=inner_clip))
    if variables is not None:
        _check_patterns_match(multipliers, variables)
    return GroupedOptimizer(PatternOptimizerMap(default, groups), global_clipnorm=opt_cfg.global_clipnorm,
                            name=f"{opt_cfg.name}_grouped")


def _check_patterns_match(multipliers, variables) -> None:
    paths = [v.path for v in variables]
    for i, group in enumerate(multipliers):
        if not any(re.search(group.pattern, p) for p in paths):
            examples = ", ".join(paths[:6]) + (", ..." if len(paths) > 6 else "")
            raise ConfigError(f"trainer.lr_multipliers.{i}.pattern: {group.pattern!r} matches no trainable "
                              f"variable; variable paths look like: {examples}")


def learning_rates(optimizer) -> dict[str, float]:
    """The current learning rate(s): {"learning_rate": lr}, or one entry per group."""
    opt = getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer
    if hasattr(opt, "optimizers"):
        return {f"learning_rate_{o.name}": float(ops.convert_to_numpy(o.learning_rate)) for o in opt.optimizers}
    return {"learning_rate": float(ops.convert_to_numpy(opt.learning_rate))}
