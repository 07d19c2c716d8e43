"""Fashion-MNIST from tiny generated IDX files, and the TFDS fallback (mocked, never downloading)."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from garden.data import fashion_mnist
from garden.data.config import DataConfig
from garden.data.errors import DataError
from garden.data.idx import write_idx
from garden.data.sources import load_source, source_info

N_TRAIN, N_TEST = 20, 10


def _write_fixture(folder, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        stem_images, stem_labels = fashion_mnist.FILES[split]
        suffix = ".gz" if gz else ""
        write_idx(folder / (stem_images + suffix), images)
        write_idx(folder / (stem_labels + suffix), labels)
        arrays[split] = (images, labels)
    return arrays


@pytest.fixture(autouse=True)
def no_debian_package(monkeypatch, tmp_path):
    """The tests never see a real /usr/share/datasets/fashion-mnist."""
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", str(tmp_path / "no-debian-package"))


def _examples(ds):
    items = list(ds.as_numpy_iterator())
    return np.stack([e["image"] for e in items]), np.array([e["label"] for e in items])


def test_reads_idx_files_from_data_dir(tmp_path):
    arrays = _write_fixture(tmp_path / "data")
    config = DataConfig(name="fashion_mnist", data_dir=str(tmp_path / "data"))
    ds = load_source(config, "train[:50%]")
    assert ds.element_spec["image"].shape == (28, 28, 1) and ds.element_spec["image"].dtype == np.uint8
    assert ds.element_spec["label"].dtype == np.int64
    images, labels = _examples(ds)
    np.testing.assert_array_equal(images[..., 0], arrays["train"][0][:10])
    np.testing.assert_array_equal(labels, arrays["train"][1][:10])
    _, labels = _examples(load_source(config, "train[50%:]+test"))
    np.testing.assert_array_equal(labels, np.concatenate([arrays["train"][1][10:], arrays["test"][1]]))


@pytest.mark.parametrize("where", ["subfolder", "option_path", "debian"])
def test_other_locations_and_plain_files(tmp_path, monkeypatch, where):
    empty = tmp_path / "empty"
    empty.mkdir()
    if where == "subfolder":
        arrays = _write_fixture(tmp_path / "cache" / "fashion-mnist", gz=False)
        config = DataConfig(name="fashion_mnist", data_dir=str(tmp_path / "cache"))
    elif where == "option_path":
        arrays = _write_fixture(tmp_path / "mine")
        config = DataConfig(name="fashion_mnist", data_dir=str(empty), options={"path": str(tmp_path / "mine")})
    else:
        arrays = _write_fixture(tmp_path / "usr-share")
        monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", str(tmp_path / "usr-share"))
        config = DataConfig(name="fashion_mnist", data_dir=str(empty))
    _, labels = _examples(load_source(config, "test"))
    np.testing.assert_array_equal(labels, arrays["test"][1])


def test_info():
    info = source_info(DataConfig(name="fashion_mnist"))
    assert info.num_classes == 10 and info.class_names[0] == "T-shirt/top" and info.class_names[9] == "Ankle boot"
    assert info.image_shape == (28, 28, 1)
    assert info.split_sizes == {"train": 60000, "test": 10000}
    assert info.feature_keys == ("image", "label")


def test_no_validation_split_and_bad_options(tmp_path):
    _write_fixture(tmp_path)
    config = DataConfig(name="fashion_mnist", data_dir=str(tmp_path))
    with pytest.raises(DataError) as excinfo:
        load_source(config, "validation")
    message = str(excinfo.value)
    assert "\n" not in message and "'validation'" in message and "train[90%:]" in message
    with pytest.raises(DataError, match="data.options.pth .*did you mean 'path'"):
        load_source(DataConfig(name="fashion_mnist", options={"pth": "x"}), "train")


def test_bad_option_path(tmp_path):
    with pytest.raises(DataError) as excinfo:
        load_source(DataConfig(name="fashion_mnist", options={"path": str(tmp_path / "nope")}), "train")
    assert "nope" in str(excinfo.value) and "not a folder" in str(excinfo.value)
    (tmp_path / "half").mkdir()
    write_idx(tmp_path / "half" / "train-images-idx3-ubyte.gz", np.zeros((1, 28, 28), np.uint8))
    with pytest.raises(DataError) as excinfo:
        load_source(DataConfig(name="fashion_mnist", options={"path": str(tmp_path / "half")}), "train")
    assert "lacks" in str(excinfo.value) and "t10k-labels-idx1-ubyte" in str(excinfo.value)


def test_corrupt_and_inconsistent_files(tmp_path):
    _write_fixture(tmp_path)
    labels = tmp_path / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:-12])
    with pytest.raises(DataError) as excinfo:
        load_source(DataConfig(name="fashion_mnist", data_dir=str(tmp_path)), "train")
    assert str(labels) in str(excinfo.value) and "\n" not in str(excinfo.value)
    write_idx(labels, np.zeros(N_TRAIN - 1, np.uint8))
    with pytest.raises(DataError, match="19 labels"):
        load_source(DataConfig(name="fashion_mnist", data_dir=str(tmp_path)), "train")


def test_tfds_fallback_mocked(tmp_path):
    config = DataConfig(name="fashion_mnist", data_dir=str(tmp_path), options={"download": False})
    with tfds.testing.mock_data(num_examples=4):
        ds = load_source(config, "train[:50%]")
        images, labels = _examples(ds)
    assert images.shape == (4, 28, 28, 1) and images.dtype == np.uint8 and labels.dtype == np.int64
    assert set(ds.element_spec) == {"image", "label"}


def test_not_found_without_download_names_every_way(tmp_path):
    config = DataConfig(name="fashion_mnist", data_dir=str(tmp_path), options={"download": False})
    with pytest.raises(DataError) as excinfo:
        load_source(config, "train")
    message = str(excinfo.value)
    assert "\n" not in message
    for part in ("apt-get install dataset-fashion-mnist", str(tmp_path), "TFDS", "download"):
        assert part in message, message


def test_failed_download_names_every_way(tmp_path, monkeypatch):
    def no_network(self, *args, **kwargs):
        raise OSError("Network is unreachable\nretrying")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_network)
    with pytest.raises(DataError) as excinfo:
        load_source(DataConfig(name="fashion_mnist", data_dir=str(tmp_path)), "train")
    message = str(excinfo.value)
    assert "\n" not in message and "Network is unreachable" in message
    assert "apt-get install dataset-fashion-mnist" in message
