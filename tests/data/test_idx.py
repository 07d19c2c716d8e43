"""The IDX reader on tiny generated files: round trips, gzip, and every corrupt-input error."""

import gzip

import numpy as np
import pytest

from garden.data.errors import DataError
from garden.data.idx import read_idx, write_idx


def _one_line_error(excinfo, *parts):
    message = str(excinfo.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, message
    return message


@pytest.mark.parametrize("name", ["x-idx3-ubyte", "x-idx3-ubyte.gz"])
def test_round_trip_uint8_plain_and_gzip(tmp_path, name):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / name
    write_idx(path, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    out = read_idx(path)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, array)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.float32, np.float64])
def test_round_trip_other_dtypes_are_big_endian(tmp_path, dtype):
    array = (np.arange(6).reshape(3, 2) * 100 - 250).astype(dtype)
    write_idx(tmp_path / "a", array)
    out = read_idx(tmp_path / "a")
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, array)
    if dtype is np.int32:  # the first value, -250, big-endian after the 4 + 2 * 4 header bytes
        assert (tmp_path / "a").read_bytes()[12:16] == b"\xff\xff\xff\x06"


def test_hand_made_mnist_labels_file(tmp_path):
    # magic 0x00000801 (uint8, 1 dim), 3 items: labels 7, 2, 9
    (tmp_path / "labels").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 9]))
    np.testing.assert_array_equal(read_idx(tmp_path / "labels", expected_ndim=1), [7, 2, 9])


def test_gzip_is_detected_by_content_not_name(tmp_path):
    write_idx(tmp_path / "plain-name", np.ones((2, 2), np.uint8), compress=True)
    np.testing.assert_array_equal(read_idx(tmp_path / "plain-name"), np.ones((2, 2)))


def test_wrong_magic(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    with pytest.raises(DataError) as excinfo:
        read_idx(tmp_path / "bad")
    _one_line_error(excinfo, str(tmp_path / "bad"), "bad magic number")


def test_unknown_dtype_code(tmp_path):
    (tmp_path / "bad").write_bytes(bytes([0, 0, 0x07, 1, 0, 0, 0, 1, 5]))
    with pytest.raises(DataError) as excinfo:
        read_idx(tmp_path / "bad")
    _one_line_error(excinfo, "unknown dtype code 0x07", "0x08")


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_data(tmp_path, gz):
    write_idx(tmp_path / "full", np.zeros((4, 5, 5), np.uint8))
    raw = (tmp_path / "full").read_bytes()[:-7]
    path = tmp_path / ("cut.gz" if gz else "cut")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(DataError) as excinfo:
        read_idx(path)
    _one_line_error(excinfo, str(path), "truncated", "[4, 5, 5]")


def test_truncated_header(tmp_path):
    (tmp_path / "cut").write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 4]))
    with pytest.raises(DataError) as excinfo:
        read_idx(tmp_path / "cut")
    _one_line_error(excinfo, "truncated", "3 dimensions")
    (tmp_path / "tiny").write_bytes(b"\x00\x00")
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "tiny")


def test_trailing_bytes(tmp_path):
    write_idx(tmp_path / "a", np.zeros((2, 2), np.uint8))
    (tmp_path / "a").write_bytes((tmp_path / "a").read_bytes() + b"junk")
    with pytest.raises(DataError) as excinfo:
        read_idx(tmp_path / "a")
    _one_line_error(excinfo, "corrupt", "4 bytes after")


def test_corrupt_gzip_stream(tmp_path):
    good = gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 200]) + bytes(200))
    (tmp_path / "a.gz").write_bytes(good[:20] + b"\xff" * 10 + good[30:])
    with pytest.raises(DataError) as excinfo:
        read_idx(tmp_path / "a.gz")
    _one_line_error(excinfo, str(tmp_path / "a.gz"))
    (tmp_path / "b.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError) as excinfo:
        read_idx(tmp_path / "b.gz")
    _one_line_error(excinfo, "gzip")


def test_missing_file_and_wrong_rank(tmp_path):
    with pytest.raises(DataError) as excinfo:
        read_idx(tmp_path / "nope.gz")
    _one_line_error(excinfo, "does not exist", "nope.gz")
    write_idx(tmp_path / "a", np.zeros((2, 2), np.uint8))
    with pytest.raises(DataError, match="expected 3"):
        read_idx(tmp_path / "a", expected_ndim=3)
