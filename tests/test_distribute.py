"""Strategies: mirrored on 2 logical CPUs, a 2-worker MultiWorkerMirroredStrategy job on 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import types

import numpy as np
import pytest
import tensorflow as tf

from garden import distribute
from garden.errors import ConfigError
from tests.test_trainer import (REPO, TINY_MODEL, child_command, child_env, child_payload, run_child,
                                weights_digest)


def _trainer(**kwargs):
    base = dict(strategy="default", cpu_replicas=None, tpu=None)
    base.update(kwargs)
    return types.SimpleNamespace(**base)


def test_default_strategy():
    strategy = distribute.build_strategy(_trainer())
    assert strategy.num_replicas_in_sync == 1
    assert distribute.is_chief(strategy)
    assert distribute.worker_dir("/w", strategy) == "/w"


def test_cpu_replicas_after_initialisation_is_a_clear_error():
    tf.constant(1.0)  # TensorFlow is initialised with one logical CPU in this process
    with pytest.raises(ConfigError, match="cpu_replicas: 3 logical CPUs cannot be set up"):
        distribute.configure_cpu_replicas(3)


def test_multi_worker_without_tf_config_is_a_config_error(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="TF_CONFIG"):
        distribute.build_strategy(_trainer(strategy="multi_worker"))


def test_worker_roles(monkeypatch):
    def fake(task_type, task_id, cluster):
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": task_type,
                                                                                 "index": task_id}}))
        resolver = types.SimpleNamespace(task_type=task_type, task_id=task_id)
        return types.SimpleNamespace(cluster_resolver=resolver)

    workers = {"worker": ["a:1", "b:2"]}
    assert distribute.is_chief(fake("worker", 0, workers))
    assert not distribute.is_chief(fake("worker", 1, workers))
    assert distribute.worker_dir("/w", fake("worker", 1, workers)) == os.path.join("/w", "workers", "worker_1")
    with_chief = {"chief": ["c:0"], "worker": ["a:1"]}
    assert distribute.is_chief(fake("chief", 0, with_chief))
    assert not distribute.is_chief(fake("worker", 0, with_chief))


def test_replicas_per_pipeline():
    assert distribute.replicas_per_pipeline(None) == 1
    assert distribute.replicas_per_pipeline(tf.distribute.InputContext(1, 0, 2)) == 2
    assert distribute.replicas_per_pipeline(tf.distribute.InputContext(2, 1, 2)) == 1


def test_mirrored_on_two_logical_cpus_matches_default(tmp_path):
    """One process split into 2 logical CPUs trains the same run under default and mirrored."""
    sections = {"trainer": {"epochs": 2, "deterministic": True, "tensorboard": {"enabled": False},
                            "optimizer": {"name": "sgd", "learning_rate": 0.05, "momentum": 0.9,
                                          "weight_decay": 1e-3, "global_clipnorm": 5.0}},
                "data": {"batch_size": 16}, "model": {"name": TINY_MODEL, "norm": "none"}}
    result = run_child({"sections": sections, "workdir": str(tmp_path), "mode": "compare_default_mirrored"})
    out = child_payload(result, "CHILD_COMPARE")
    default, mirrored = out["default"], out["mirrored"]
    assert mirrored["metrics"]["num_replicas"] == 2 and mirrored["metrics"]["per_replica_batch_size"] == 8
    assert np.isfinite(mirrored["metrics"]["train"]["loss"])
    for key in ("loss", "accuracy"):
        assert mirrored["metrics"]["test"][key] == pytest.approx(default["metrics"]["test"][key], abs=2e-3)
    assert default["weights"].keys() == mirrored["weights"].keys()
    for name in default["weights"]:
        np.testing.assert_allclose(mirrored["weights"][name], default["weights"][name], rtol=1e-3, atol=1e-4,
                                   err_msg=name)


def _free_ports(n: int) -> list[int]:
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def test_multi_worker_two_local_processes_finish_with_identical_weights(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    sections = {"trainer": {"strategy": "multi_worker", "epochs": 1, "tensorboard": {"enabled": False},
                            "checkpoint": {"monitor": "val_accuracy", "backup_every": 3}},
                "data": {"batch_size": 16}}
    job = {"sections": sections, "workdir": str(tmp_path)}
    processes = []
    for index in range(2):
        env = child_env({"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})})
        processes.append(subprocess.Popen(child_command(job), cwd=REPO, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True))
    outputs = []
    try:
        for process in processes:
            stdout, _ = process.communicate(timeout=300)
            outputs.append(stdout)
            assert process.returncode == 0, stdout[-6000:]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    chief = tmp_path / "backup" / "latest.weights.h5"
    worker = tmp_path / "workers" / "worker_1" / "backup" / "latest.weights.h5"
    assert weights_digest(chief) == weights_digest(worker)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["num_replicas"] == 2 and metrics["per_replica_batch_size"] == 8
    assert np.isfinite(metrics["test"]["loss"])
    assert not (tmp_path / "workers" / "worker_1" / "metrics.json").exists()  # only the chief writes it
