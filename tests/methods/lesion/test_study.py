"""The lesion experiments on small models (the numbers themselves are in docs/results)."""

import numpy as np
import pytest

from garden.errors import GardenError
from garden.methods.lesion import paths, plain_vgg15, plots, study
from garden.methods.lesion.surgery import block_infos
from garden.nn import resnet
from tests import invariants as inv

FASHION = (28, 28, 1)


@pytest.fixture(scope="module")
def data():
    x = inv.random_inputs(FASHION, batch_size=24, seed=3)
    y = np.random.default_rng(3).integers(0, 10, 24).astype(np.int32)
    return x, y


@pytest.fixture(scope="module")
def tiny_resnet(data):
    model = resnet.resnet20(width_multiplier=0.25, num_classes=10)
    model(data[0][:1])
    return model


def test_error_rate_matches_the_model(tiny_resnet, data):
    x, y = data
    expected = float(np.mean(np.argmax(tiny_resnet(x).numpy(), -1) != y))
    assert study.error_rate(tiny_resnet, x, y, batch_size=7) == pytest.approx(expected)


def test_single_deletions_cover_every_block(tiny_resnet, data):
    result = study.single_deletions(tiny_resnet, *data)
    assert [r["index"] for r in result["blocks"]] == list(range(9))
    assert [r["downsampling"] for r in result["blocks"]] == [i in (3, 6) for i in range(9)]
    assert all(0.0 <= r["error"] <= 1.0 for r in result["blocks"])
    assert result["baseline_error"] == study.error_rate(tiny_resnet, *data)


def test_random_deletions(tiny_resnet, data):
    rng = np.random.default_rng(0)
    result = study.random_deletions(tiny_resnet, *data, [0, 2, 9], 2, rng)
    k0, k2, k9 = result["rows"]
    assert k0["errors"] == [study.error_rate(tiny_resnet, *data)]  # k = 0: one draw, no deletion
    assert len(k2["errors"]) == 2 and all(len(s) == 2 and len(set(s)) == 2 for s in k2["deleted"])
    assert k9["deleted"] == [list(range(9))] * 2
    with pytest.raises(GardenError, match="cannot delete 10 blocks"):
        study.random_deletions(tiny_resnet, *data, [10], 1, rng)


def test_swaps_keep_downsampling_blocks_and_stages_in_place(tiny_resnet):
    infos = block_infos(tiny_resnet)
    rng = np.random.default_rng(1)
    for k in (1, 3, 20):
        order = study._swap_pairs(infos, k, rng)
        assert sorted(order) == list(range(9))
        assert order[3] == 3 and order[6] == 6  # downsampling blocks never move
        assert all(infos[j].stage == infos[p].stage for p, j in enumerate(order))
    assert study._swap_pairs(infos, 0, rng) == list(range(9))


def test_random_swaps_report_kendall_tau(tiny_resnet, data):
    result = study.random_swaps(tiny_resnet, *data, [0, 2], 2, np.random.default_rng(2))
    assert [r["k"] for r in result["rows"]] == [0, 2, 2]
    assert result["rows"][0]["kendall_tau"] == 1.0
    for row in result["rows"]:
        assert row["kendall_tau"] == paths.kendall_tau(row["order"])


def test_path_gradients_and_figures(tiny_resnet, data, tmp_path):
    x, y = data
    batches = [(x[:8], y[:8]), (x[8:16], y[8:16])]
    result = study.path_gradients(tiny_resnet, batches, 2, np.random.default_rng(0))
    assert result["lengths"] == list(range(10))
    assert all(v > 0 and np.isfinite(v) for v in result["mean_gradient_norm"])
    assert sum(result["total_gradient_share"]) == pytest.approx(1.0)
    lo, hi = result["effective_lengths"]
    assert 0 <= lo <= hi <= 9
    statistics = study.path_statistics(9)
    assert statistics["share_in_central_range"] == pytest.approx(
        paths.path_length_distribution(9)[slice(*statistics["central_range"])].sum()
        + paths.path_length_distribution(9)[statistics["central_range"][1]]
    )
    runs = [("tiny", study.single_deletions(tiny_resnet, x[:4], y[:4]))]
    for name, fig in {
        "single": plots.single_deletion_figure(runs, 0.9),
        "paths": plots.paths_figure([("tiny", result)], statistics),
        "remaining": plots.remaining_paths_figure(statistics),
    }.items():
        path = tmp_path / f"{name}.png"
        plots.save(fig, path)
        assert path.read_bytes()[:4] == b"\x89PNG"


def test_plain_network_has_no_path_analysis(data):
    model = plain_vgg15(width=4)
    model(data[0][:1])
    with pytest.raises(GardenError, match="no skip connections"):
        study.path_gradients(model, [data], 1, np.random.default_rng(0))
    result = study.single_deletions(model, *data)
    assert [r["index"] for r in result["blocks"]] == list(range(1, 15))  # not the first layer
