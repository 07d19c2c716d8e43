"""MultiTaskNet (NDDR-CNN and its baselines): invariants, the (1, 0) reproduction of the
single-task networks, parameter counts against garden.nn's backbones, export through the task."""

import keras
import numpy as np
import pytest

from garden.errors import ConfigError
from garden.methods.nddr.models import MultiTaskNet
from garden.nn.resnet import resnet101
from garden.nn.vgg import vgg16
from garden.registry import MODELS
from garden.tasks.dense import DenseTask
from tests import invariants as inv

TASKS = {"segmentation": 5, "normals": 3}
SHAPE = (32, 32, 3)


def tiny(**kwargs):
    defaults = dict(tasks=TASKS, blocks_per_stage=(1, 1, 1, 1, 1), width_multiplier=1 / 16,
                    head_kwargs={"width": 8, "dilation": 2, "dropout": 0.0})
    return MultiTaskNet(**{**defaults, **kwargs})


def _loss(outputs):
    return sum(keras.ops.mean(keras.ops.square(o)) for o in outputs.values())


@pytest.mark.parametrize("kwargs", [
    dict(fusion="nddr"),
    pytest.param(dict(fusion="nddr", shortcut=True, shortcut_channels=8), marks=pytest.mark.slow),
    pytest.param(dict(fusion="cross_stitch"), marks=pytest.mark.slow),
    pytest.param(dict(fusion="none", shared_stages=5), marks=pytest.mark.slow),
    pytest.param(dict(fusion="none", tasks={"normals": 3}), marks=pytest.mark.slow),
], ids=["nddr", "nddr_shortcut", "cross_stitch", "shared_bottom", "single_task"])
def test_invariants(kwargs, tmp_path):
    model = tiny(**kwargs)
    x = inv.random_inputs(SHAPE, 2)
    out = inv.check_symbolic_matches_eager(model, SHAPE, inputs=x)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        k: (2, 4, 4, c) for k, c in kwargs.get("tasks", TASKS).items()}  # output stride 8
    inv.check_config_round_trip(model)
    inv.check_train_step(model, x, _loss)
    inv.check_keras_save_load(model, x, tmp_path)
    inv.check_mixed_precision(lambda **kw: tiny(**kwargs, **kw), x, via="argument")


def test_resnet_tower_builds_and_trains():
    model = MultiTaskNet(tasks=TASKS, backbone="resnet", blocks_per_stage=(1, 1, 1, 1), width_multiplier=1 / 16,
                         head="aspp", head_kwargs={"rates": [1, 2]})
    x = inv.random_inputs(SHAPE, 2)
    assert model.stage_channels == [4, 16, 32, 64, 128]
    inv.check_train_step(model, x, _loss)
    inv.check_config_round_trip(model)


def test_alpha_one_beta_zero_reproduces_the_single_task_networks():
    """Spec B.7 N6: with (alpha, beta) = (1, 0) the fused network is the two single-task ones
    (to float32 rounding: inference BN's rsqrt(1 - eps + eps) is 1 only to ~1e-7, and later layers
    carry that; the tolerance is 1e-5 of the outputs' scale)."""
    keras.utils.set_random_seed(0)
    x = inv.random_inputs(SHAPE, 2, seed=3) * 50.0
    singles = {name: tiny(tasks={name: c}, fusion="none") for name, c in TASKS.items()}
    fused = tiny(fusion="nddr", alpha=1.0, beta=0.0)
    fused(x)
    for name, single in singles.items():
        single(x)
        for target, source in zip(fused.task_layers(name), single.task_layers(name)):
            target.set_weights(source.get_weights())
    out = fused(x, training=False)
    for name, single in singles.items():
        expected = single(x, training=False)[name].numpy()
        scale = np.abs(expected).max()
        assert scale > 1e-3  # not a trivially zero comparison
        np.testing.assert_allclose(out[name].numpy(), expected, rtol=0, atol=1e-5 * scale)
    # (0.9, 0.1) mixes the towers: the outputs differ.
    mixed = tiny(fusion="nddr")
    mixed(x)
    for target, source in zip(mixed.weights, fused.weights):
        if "nddr" not in source.path:
            target.assign(source)
    assert not np.allclose(mixed(x)["segmentation"].numpy(), out["segmentation"].numpy(), atol=1e-5)


@pytest.mark.slow
def test_towers_match_garden_backbones_and_paper_overhead():
    """A DeepLab VGG-16 tower has the layers of garden.nn's vgg16 (BN, 3x3 pools, output stride
    8); NDDR-CNN = two single-task networks + 2,441,216 NDDR weights + their BN (spec B.2.2)."""
    nddr = MODELS.get("nddr_vgg16")()
    single = MODELS.get("single_task_vgg16")(tasks={"segmentation": 40})
    reference = vgg16(batch_norm=True, include_top=False, pool_size=3, output_stride=8)
    for model in (nddr, single, reference):
        model(np.zeros((1, 64, 64, 3), np.float32))
    tower = sum(layer.count_params() for layer in single.towers["segmentation"])
    # keras.applications' VGG16 convolutions have 14,714,688 parameters with biases; with BN
    # instead of the 4,224 biases: + 4 x 4,224 (gamma, beta, moving mean, moving variance).
    assert tower == reference.count_params() == 14_714_688 - 4224 + 4 * 4224
    nddr_layers = sum(layer.count_params() for layer in nddr.fusions)
    assert nddr_layers == 2_441_216 + 2 * 4 * (64 + 128 + 256 + 512 + 512)
    normals = MODELS.get("single_task_vgg16")(tasks={"normals": 3})
    normals(np.zeros((1, 64, 64, 3), np.float32))
    assert nddr.count_params() == single.count_params() + normals.count_params() + nddr_layers


@pytest.mark.slow
def test_resnet101_tower_matches_garden_resnet101():
    model = MODELS.get("nddr_resnet101")()
    assert model.stage_channels == [64, 256, 512, 1024, 2048]  # the five NDDR locations
    single = MultiTaskNet(tasks={"normals": 3}, backbone="resnet", fusion="none", head="aspp")
    single(np.zeros((1, 32, 32, 3), np.float32))
    reference = resnet101(include_top=False, output_stride=8)
    reference(np.zeros((1, 32, 32, 3), np.float32))
    assert sum(layer.count_params() for layer in single.towers["normals"]) == reference.count_params()


def test_bad_settings_are_one_line_errors():
    with pytest.raises(ConfigError, match="unknown fusion 'ndr'.*did you mean 'nddr'"):
        tiny(fusion="ndr")
    with pytest.raises(ConfigError, match="needs at least 2 tasks"):
        tiny(tasks={"normals": 3})
    with pytest.raises(ConfigError, match="nothing to fuse"):
        tiny(shared_stages=5)
    with pytest.raises(ConfigError, match="init_checkpoints.*'depth'"):
        tiny(init_checkpoints={"depth": "/nowhere"})
    with pytest.raises(ConfigError, match="no trained run"):
        tiny(init_checkpoints={"normals": "/nowhere"})(np.zeros((1, 32, 32, 3), np.float32))


def test_dense_task_exports_both_tasks_from_one_model(tmp_path):
    info = {"image_shape": list(SHAPE), "label_names": {"segmentation": [str(i) for i in range(5)]}}
    task = DenseTask(tiny(), info, heads=("segmentation", "normals"), loss_weights={"normals": 20.0})
    features = {"image": inv.random_inputs(SHAPE, 2, seed=1) * 40.0 + 120.0}
    task(features)
    manifest = inv.check_export_parity(task, features, tmp_path)
    assert {"segmentation", "segmentation_probabilities", "normals"} <= set(manifest["outputs"])
