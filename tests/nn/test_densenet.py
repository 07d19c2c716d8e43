"""DenseNets: exact parameter counts (keras.applications and Huang et al. 2017)."""

import keras
import pytest

from garden.nn import densenet
from garden.registry import MODELS
from tests import invariants as inv

# name -> (count_params() with BN moving statistics, trainable, input shape, paper figure).
# ImageNet totals are keras.applications' count_params() (bias-free convolutions, as ours);
# trainable are torchvision's counts. DenseNet-BC (L=100, k=12): Huang et al. Table 2, 0.8M.
PAPER_COUNTS = {
    "densenet121": (8_062_504, 7_978_856, (224, 224, 3), "8.0M"),
    "densenet169": (14_307_880, 14_149_480, (224, 224, 3), "14.1M"),
    "densenet201": (20_242_984, 20_013_928, (224, 224, 3), "20.0M"),
    "densenet_bc100": (793_150, 769_162, (32, 32, 3), "0.8M"),
}
SLOW = {"densenet169", "densenet201"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in PAPER_COUNTS]
)
def test_paper_parameter_counts(name):
    total, trainable, shape, figure = PAPER_COUNTS[name]
    inv.check_param_count(MODELS.get(name)(), total, shape, trainable=trainable)
    digits = len(figure[:-1].split(".")[1])
    assert f"{trainable / 1e6:.{digits}f}M" == figure


@pytest.mark.slow  # builds keras.applications' model too; the counts above are its numbers
@pytest.mark.parametrize("name", ["densenet121", "densenet169", "densenet201"])
def test_same_count_as_keras_applications(name):
    reference = getattr(keras.applications, name.replace("densenet", "DenseNet"))(weights=None)
    assert reference.count_params() == PAPER_COUNTS[name][0]
    kernels = sorted(tuple(w.shape) for w in reference.weights if len(w.shape) >= 2)
    ours = MODELS.get(name)()
    ours.build((None, 224, 224, 3))
    assert sorted(tuple(w.shape) for w in ours.weights if len(w.shape) >= 2) == kernels


def test_structure():
    model = densenet.densenet121(include_top=False)
    assert [i["channels"] for i in model.feature_info] == [64, 256, 512, 1024, 1024]
    assert [i["stride"] for i in model.feature_info] == [2, 4, 8, 16, 32]
    assert model.num_features == 1024  # the 1024-d pooled feature of seed 000 A.2.4
    cifar = densenet.densenet_bc100(growth_rate=40)  # Neural Rejuvenation's DenseNet-100-40
    assert [i["key"] for i in cifar.feature_info] == ["C0", "C1", "C2"]
    assert len(cifar.dense_layers) == 48 and cifar.dense_layers[0].growth_rate == 40
    with pytest.raises(ValueError, match="stem"):
        densenet.DenseNet(stem="tiny")
