"""Fixtures of the CSN tests: a tiny toyworld:attributes triplet config and a folder dataset."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest
import tensorflow as tf

from garden.data.config import DataConfig

NOTIONS = ["shape", "color", "texture"]


def attributes_data(**overrides) -> DataConfig:
    options = {
        "source": "toyworld:attributes",
        "source_options": {"image_size": 16, "num_train": 40, "num_validation": 16, "num_test": 16},
        "notions": NOTIONS,
        "triplets_per_notion": {"train": 8, "validation": 4, "test": 4},
        "seed": 0,
        **overrides,
    }
    return DataConfig(name="csn_triplets", options=options, batch_size=6, shuffle_buffer=16)


def write_folder_dataset(root, *, num_images=24, channels=3, columns=("type", "closure"), seed=0) -> str:
    """A Zappos-like folder: PNGs of two sizes (136x102 and 120x90, resized by the dataset) and a
    labels.csv with a split column, label columns (names) and one empty cell (unknown label)."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    splits = ["train", "validation", "test"]
    rows = []
    for i in range(num_images):
        h, w = (102, 136) if i % 2 else (90, 120)
        pixels = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
        path = f"images/{i:03d}.png"
        tf.io.write_file(os.path.join(root, path), tf.io.encode_png(pixels))
        row = {"image": path, "split": splits[i % 3]}
        for j, column in enumerate(columns):
            row[column] = f"{column}{(i // 3 + j) % 2}"
        rows.append(row)
    rows[0][columns[0]] = ""  # an unknown label: left out of that notion's triplets
    with open(os.path.join(root, "labels.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["image", "split", *columns])
        writer.writeheader()
        writer.writerows(rows)
    return str(root)


@pytest.fixture
def folder_root(tmp_path):
    return write_folder_dataset(tmp_path / "zappos")
