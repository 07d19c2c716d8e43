"""The csn_triplets dataset: triplets per notion inside each split, fixed by seed, over toyworld
(in memory) and over a folder source (lazy), with one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from garden.data.config import DataConfig
from garden.data.errors import DataError
from garden.data.pipeline import build_dataset
from garden.data.sources import load_source, source_info
from garden.methods.csn.data import notion_labels
from tests.methods.csn.conftest import NOTIONS, attributes_data


def _triplets(config, split):
    return [(ex["image"], int(ex["condition"])) for ex in load_source(config, split).as_numpy_iterator()]


def test_toyworld_triplets_follow_each_notion():
    config = attributes_data()
    images, labels = notion_labels(config, "train")
    assert images.shape == (40, 16, 16, 3) and set(labels) == set(NOTIONS)
    examples = _triplets(config, "train")
    assert len(examples) == 8 * 3
    assert [c for _, c in examples] == [0, 1, 2] * 8  # equal proportions, interleaved
    # Find every triplet image among the split's images and check its labels under the notion.
    flat = images.reshape(len(images), -1)
    for triplet, condition in examples:
        assert triplet.shape == (3, 16, 16, 3) and triplet.dtype == np.uint8
        index = [int(np.flatnonzero((flat == t.reshape(-1)).all(axis=1))[0]) for t in triplet]
        column = labels[NOTIONS[condition]]
        assert column[index[0]] == column[index[1]] != column[index[2]]
        assert index[0] != index[1]


def test_triplets_are_fixed_by_seed_and_differ_between_splits_and_seeds():
    config = attributes_data()
    first = np.stack([t for t, _ in _triplets(config, "validation")])
    again = np.stack([t for t, _ in _triplets(config, "validation")])
    np.testing.assert_array_equal(first, again)
    other_seed = np.stack([t for t, _ in _triplets(attributes_data(seed=1), "validation")])
    assert not np.array_equal(first, other_seed)
    assert len(_triplets(config, "test")) == 4 * 3


def test_info_counts_triplets_and_names_the_notions():
    info = source_info(attributes_data())
    assert info.image_shape == (3, 16, 16, 3)
    assert info.label_names["condition"] == tuple(NOTIONS)
    assert info.split_sizes == {"train": 24, "validation": 12, "test": 12}
    assert info.split_size("train[:50%]") == 24  # a slice selects images, the triplet count stays


def test_pipeline_batches_triplets():
    features, labels = next(iter(build_dataset(attributes_data(), "train", training=True, seed=0)))
    assert features["image"].shape == (6, 3, 16, 16, 3)
    assert labels["condition"].shape == (6,)


@pytest.mark.parametrize("options,match", [
    ({"notions": ["colour"]}, r"unknown label key of toyworld:attributes 'colour' \(did you mean 'color'\?\)"),
    ({"triplets_per_notion": {"train": 0}}, "must be >= 1"),
    ({"source": "csn_triplets"}, "cannot read from itself"),
    ({"notion": ["shape"]}, r"unknown option data.options.notion for csn_triplets \(did you mean 'notions'\?\)"),
])
def test_bad_options_fail_with_one_line(options, match):
    with pytest.raises(DataError, match=match):
        source_info(attributes_data(**options))


def test_split_without_a_triplet_count_fails():
    with pytest.raises(DataError, match="triplets_per_notion has no entry for 'validation'"):
        load_source(attributes_data(triplets_per_notion={"train": 4}), "validation")


def _folder_config(root, **overrides):
    options = {"source": "folder", "source_options": {"root": root}, "notions": ["type", "closure"],
               "triplets_per_notion": {"train": 6, "validation": 3, "test": 3}, "image_size": [28, 28], **overrides}
    return DataConfig(name="csn_triplets", options=options, batch_size=4)


def test_folder_source_triplets(folder_root):
    config = _folder_config(folder_root)
    info = source_info(config)
    assert info.image_shape == (3, 28, 28, 3)
    examples = list(load_source(config, "train").as_numpy_iterator())
    assert len(examples) == 12
    assert {ex["image"].shape for ex in examples} == {(3, 28, 28, 3)}
    assert [int(ex["condition"]) for ex in examples] == [0, 1] * 6


def test_folder_source_grey(folder_root):
    config = _folder_config(folder_root, channels=1)
    example = next(load_source(config, "test").as_numpy_iterator())
    assert example["image"].shape == (3, 28, 28, 1)
    assert source_info(config).image_shape == (3, 28, 28, 1)


def test_folder_source_bad_notion(folder_root):
    with pytest.raises(DataError, match="has no column 'heel'"):
        source_info(_folder_config(folder_root, notions=["heel"], source_options={"root": folder_root,
                                                                                   "label_columns": ["heel"]}))
    with pytest.raises(DataError, match=r"unknown label key of folder 'closer' \(did you mean 'closure'\?\)"):
        source_info(_folder_config(folder_root, notions=["closer"]))
