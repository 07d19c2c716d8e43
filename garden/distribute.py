"""tf.distribute strategies from the `trainer` section, and distributed input.

    default        one device (tf.distribute.get_strategy())
    mirrored       MirroredStrategy over the local GPUs; on a machine without GPUs,
                   `trainer.cpu_replicas: N` first splits the CPU into N logical devices
                   (so mirrored training can be run and tested on a laptop or CI)
    multi_worker   MultiWorkerMirroredStrategy; the cluster comes from TF_CONFIG
    tpu            TPUStrategy on `trainer.tpu` (name or grpc:// address; "" for a local TPU VM)

Order matters: logical devices must be configured, and a multi-worker strategy created, before
TensorFlow runs its first op in the process. `build_strategy` does both; call it first.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable

import tensorflow as tf

from garden.errors import ConfigError

__all__ = ["configure_cpu_replicas", "build_strategy", "is_chief", "worker_id", "worker_dir",
           "replicas_per_pipeline", "distribute_datasets"]

log = logging.getLogger(__name__)


def configure_cpu_replicas(num: int) -> list:
    """Split the (first) physical CPU into `num` logical devices; returns the logical CPUs.

    Must run before TensorFlow initialises its devices. If they are already initialised with
    exactly `num` logical CPUs this is a no-op; otherwise it raises ConfigError.
    """
    cpus = tf.config.list_physical_devices("CPU")
    if not cpus:
        raise ConfigError("trainer.cpu_replicas: no CPU device found")
    wanted = [tf.config.LogicalDeviceConfiguration() for _ in range(int(num))]
    current = tf.config.get_logical_device_configuration(cpus[0])
    if current is not None and len(current) == num:
        return tf.config.list_logical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(cpus[0], wanted)
    except RuntimeError as e:
        have = len(tf.config.list_logical_devices("CPU"))
        if have == num:
            return tf.config.list_logical_devices("CPU")
        raise ConfigError(
            f"trainer.cpu_replicas: {num} logical CPUs cannot be set up: TensorFlow is already initialised "
            f"with {have} ({e}); set it in a fresh process, before any TensorFlow op runs") from None
    return tf.config.list_logical_devices("CPU")


def _tf_config() -> dict:
    raw = os.environ.get("TF_CONFIG", "")
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({e})") from None


def build_strategy(trainer_config) -> tf.distribute.Strategy:
    """The strategy named by `trainer_config.strategy` (sets up logical CPUs first if asked)."""
    name = trainer_config.strategy
    cpu_replicas = getattr(trainer_config, "cpu_replicas", None)
    if name == "default":
        if cpu_replicas and cpu_replicas > 1:
            log.warning("trainer.cpu_replicas=%d has no effect with strategy 'default'", cpu_replicas)
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_physical_devices("GPU")
        if cpu_replicas:
            if gpus:
                log.warning("trainer.cpu_replicas=%d: GPUs are present; mirroring over the CPU's logical "
                            "devices as asked", cpu_replicas)
            logical = configure_cpu_replicas(cpu_replicas)
            devices = [d.name for d in logical[:cpu_replicas]]
            # Ring all-reduce between logical CPUs (NCCL is for GPUs only).
            return tf.distribute.MirroredStrategy(
                devices=devices, cross_device_ops=tf.distribute.ReductionToOneDevice(reduce_to_device=devices[0]))
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        cluster = _tf_config()
        if not cluster.get("cluster"):
            raise ConfigError("trainer.strategy: 'multi_worker' needs TF_CONFIG with a 'cluster' and a 'task' "
                              "(see https://www.tensorflow.org/guide/distributed_training#TF_CONFIG)")
        if cpu_replicas and cpu_replicas > 1:
            log.warning("trainer.cpu_replicas is ignored with strategy 'multi_worker' (one replica per worker "
                        "without GPUs)")
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.AUTO)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    if name == "tpu":
        address = getattr(trainer_config, "tpu", None) or ""
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=address)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.OpError) as e:
            raise ConfigError(f"trainer.tpu: cannot reach TPU {address!r}: {' '.join(str(e).split())}") from None
        return tf.distribute.TPUStrategy(resolver)
    raise ConfigError(f"trainer.strategy: unknown strategy {name!r}; valid: default, mirrored, multi_worker, tpu")


def _task(strategy) -> tuple[str | None, int | None]:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return None, None
    return resolver.task_type, resolver.task_id


def is_chief(strategy) -> bool:
    """True unless this process is a non-chief worker of a multi-worker job."""
    task_type, task_id = _task(strategy)
    if task_type is None:
        return True
    if task_type == "chief":
        return True
    if task_type == "worker":
        has_chief = "chief" in (_tf_config().get("cluster") or {})
        return not has_chief and task_id == 0
    return False


def worker_id(strategy) -> str:
    task_type, task_id = _task(strategy)
    return "chief" if task_type is None else f"{task_type}_{task_id}"


def worker_dir(workdir: str, strategy) -> str:
    """Where this process writes: the workdir for the chief, `<workdir>/workers/<type>_<id>` otherwise.

    Non-chief workers must still save (collective ops run on every worker) but must not race
    the chief on the same files.
    """
    if is_chief(strategy):
        return workdir
    return os.path.join(workdir, "workers", worker_id(strategy))


def replicas_per_pipeline(input_context: tf.distribute.InputContext | None) -> int:
    """Per-replica batches each input pipeline yields per training step."""
    if input_context is None:
        return 1
    return max(input_context.num_replicas_in_sync // max(input_context.num_input_pipelines, 1), 1)


def distribute_datasets(strategy, dataset_fn: Callable[[tf.distribute.InputContext | None], tf.data.Dataset]):
    """`strategy.distribute_datasets_from_function(dataset_fn)`; each pipeline batches per replica.

    Under the default strategy the plain dataset `dataset_fn(None)` is returned.
    """
    if not _is_real_strategy(strategy):
        return dataset_fn(None)
    return strategy.distribute_datasets_from_function(
        dataset_fn, options=tf.distribute.InputOptions(experimental_fetch_to_device=True))


def _is_real_strategy(strategy) -> bool:
    return type(strategy).__name__ not in ("_DefaultDistributionStrategy", "_DefaultDistributionStrategyV1")


def replica_local_variables(model) -> list:
    """Non-trainable float weights that each replica updates on its own (Keras 3 BatchNormalization
    moving statistics: aggregation "none", so every replica keeps the statistics of its own batches)."""
    return [w for w in model.non_trainable_weights
            if getattr(w, "aggregation", None) == "none" and "float" in str(w.dtype)]


def sync_replica_variables(model, strategy) -> None:
    """Average `replica_local_variables(model)` over all replicas (and workers), in place.

    Call it from the cross-replica context (callbacks) at the same points on every worker. Without
    it the checkpoint holds the first replica's statistics and multi-worker checkpoints differ
    between workers (Keras 2 averaged such variables on read; Keras 3 does not).
    """
    if strategy.num_replicas_in_sync <= 1:
        return
    variables = replica_local_variables(model)
    if not variables:
        return
    fn = getattr(model, "_garden_sync_replica_variables", None)
    if fn is None:
        def replica_fn():
            context = tf.distribute.get_replica_context()
            means = context.all_reduce(tf.distribute.ReduceOp.MEAN, [tf.identity(v.value) for v in variables])
            for variable, mean in zip(variables, means):
                variable.assign(mean)

        fn = tf.function(lambda: strategy.run(replica_fn))
        model._garden_sync_replica_variables = fn
    fn()
