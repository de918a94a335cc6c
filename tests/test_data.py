"""Data readers round-trip files the tests write; errors name the paths searched."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from core import data
from core.errors import ConfigError, DataError


def test_digits_split_is_stratified_and_scaled(digits):
    assert digits.x_train.shape == (1347, 1, 8, 8) and digits.x_test.shape == (450, 1, 8, 8)
    assert digits.x_train.dtype == torch.float32 and digits.y_train.dtype == torch.int64
    assert float(digits.x_train.min()) == 0.0 and float(digits.x_train.max()) == 1.0
    from sklearn.datasets import load_digits

    per_class = np.bincount(load_digits().target)
    counts = torch.bincount(digits.y_test, minlength=10).numpy()
    assert np.all(np.abs(counts - 0.25 * per_class) <= 1)  # stratified: 25 % of every class
    x, y = digits.train
    assert x is digits.x_train and y is digits.y_train and digits.test[1] is digits.y_test
    again = data.load("digits")
    assert torch.equal(again.x_train, digits.x_train)
    other = data.load("digits", seed=1)
    assert not torch.equal(other.y_train, digits.y_train)


def _write_idx_set(folder, n_train=12, n_test=5, size=28, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, size, size), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, size, size), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for key, stem in data.IDX_FILES.items():
        data.write_idx(folder / (stem + (".gz" if gz else "")), arrays[key])
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip_mnist(tmp_path, gz):
    arrays = _write_idx_set(tmp_path, gz=gz)
    ds = data.load("mnist", str(tmp_path))
    assert ds.x_train.shape == (12, 1, 28, 28) and ds.shape == (1, 28, 28)
    np.testing.assert_allclose(ds.x_train[:, 0].numpy() * 255, arrays["x_train"], atol=1e-3)
    assert ds.y_test.tolist() == arrays["y_test"].astype(int).tolist()


def test_fashion_mnist_from_root(tmp_path):
    _write_idx_set(tmp_path, seed=3)
    ds = data.load("fashion-mnist", str(tmp_path))
    assert ds.classes[0] == "T-shirt/top" and len(ds.y_train) == 12


def test_a_fashion_mnist_root_is_the_only_place_searched(tmp_path):
    """A root that is missing or empty is an error naming it, never the system copy instead."""
    with pytest.raises(DataError, match="root .*nope is not a folder"):
        data.load("fashion-mnist", str(tmp_path / "nope"))
    with pytest.raises(DataError, match=f"searched {tmp_path}, {tmp_path / 'raw'}\\. "):
        data.load("fashion-mnist", str(tmp_path))
    (tmp_path / "raw").mkdir()
    _write_idx_set(tmp_path / "raw", seed=4)  # torchvision's layout: root/raw
    assert len(data.load("fashion-mnist", str(tmp_path)).y_train) == 12


def test_missing_mnist_names_paths(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path)):
        data.load("mnist", str(tmp_path))
    with pytest.raises(DataError, match="root"):
        data.load("mnist")


def test_truncated_idx_is_refused(tmp_path):
    path = tmp_path / "x-idx3-ubyte"
    data.write_idx(path, np.zeros((4, 5, 5), np.uint8))
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(DataError, match="truncated"):
        data.read_idx(path)
    path.write_bytes(b"\x01\x02\x03\x04garbage")
    with pytest.raises(DataError, match="magic"):
        data.read_idx(path)


def _write_cifar(folder, n=6):
    rng = np.random.default_rng(0)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"labels": rng.integers(0, 10, n).tolist(),
        }
        written[name] = batch
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    return written


def test_cifar_round_trip(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    written = _write_cifar(folder)
    ds = data.load("cifar10", str(tmp_path))
    assert ds.x_train.shape == (30, 3, 32, 32) and ds.x_test.shape == (6, 3, 32, 32)
    first = written["data_batch_1"][b"data"][0].reshape(3, 32, 32)
    np.testing.assert_allclose(ds.x_train[0].numpy() * 255, first, atol=1e-3)
    assert ds.y_test.tolist() == written["test_batch"][b"labels"]
    assert ds.classes[3] == "cat"


def test_cifar_refuses_malicious_pickle(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    _write_cifar(tmp_path)
    with open(tmp_path / "data_batch_1", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": []}, f)
    with pytest.raises(DataError, match="refusing to unpickle"):
        data.load("cifar10", str(tmp_path))


def test_cifar_missing(tmp_path):
    with pytest.raises(DataError, match="data_batch_1"):
        data.load("cifar10", str(tmp_path))


def test_npz_round_trip_and_validation(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.random((20, 10, 10)).astype(np.float32),
        "y_train": np.arange(20) % 3,
        "x_test": rng.random((6, 10, 10)).astype(np.float32),
        "y_test": np.arange(6) % 3,
    }
    path = tmp_path / "mine.npz"
    np.savez(path, **arrays)
    ds = data.load("npz", str(path))
    assert ds.shape == (1, 10, 10) and len(ds.classes) == 3
    assert 0.0 <= float(ds.x_train.min()) and float(ds.x_train.max()) <= 1.0

    bad = dict(arrays, y_test=np.array([0, 1, 2, 3, 0, 1]))
    np.savez(path, **bad)
    with pytest.raises(DataError, match="y_test"):
        data.load("npz", str(path))
    np.savez(path, **{k: v for k, v in arrays.items() if k != "x_test"})
    with pytest.raises(DataError, match="x_test"):
        data.load("npz", str(path))
    np.savez(path, **dict(arrays, y_train=np.arange(19)))
    with pytest.raises(DataError, match="y_train"):
        data.load("npz", str(path))
    np.savez(path, **dict(arrays, y_train=np.array([{"a": 1}] * 20, dtype=object)))
    with pytest.raises(DataError, match="'y_train' is an object array"):
        data.load("npz", str(path))


def test_npz_labels_must_be_the_training_classes(tmp_path):
    """A label 42 among 0..9 is refused naming the array and the value (not a 43-class problem)."""
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.random((40, 8, 8)),
        "y_train": np.arange(40) % 10,
        "x_test": rng.random((10, 8, 8)),
        "y_test": np.arange(10),
    }
    path = tmp_path / "labels.npz"
    y_train = arrays["y_train"].copy()
    y_train[7] = 42
    np.savez(path, **dict(arrays, y_train=y_train))
    with pytest.raises(DataError, match=r"y_train has label 42 but no sample of class 10"):
        data.load("npz", str(path))
    y_test = arrays["y_test"].copy()
    y_test[3] = 42
    np.savez(path, **dict(arrays, y_test=y_test))
    with pytest.raises(DataError, match=r"y_test has label 42 not among the classes of y_train \(0..9\)"):
        data.load("npz", str(path))
    np.savez(path, **arrays)
    assert len(data.load("npz", str(path)).classes) == 10


@pytest.mark.parametrize("label", [2**40, np.iinfo(np.uint64).max])
def test_a_huge_stray_label_is_refused_without_enumerating_the_classes(tmp_path, label):
    """A label of 2**40 once made check_classes build range(2**40 + 1) and exhaust memory."""
    y_train = (np.arange(40) % 10).astype(np.uint64 if label > 2**63 else np.int64)
    y_train[7] = label
    arrays = {"x_train": np.zeros((40, 8, 8)), "y_train": y_train, "x_test": np.zeros((10, 8, 8))}
    np.savez(tmp_path / "huge.npz", **arrays, y_test=np.arange(10))
    with pytest.raises(DataError, match=f"y_train has label {label} but no sample of class 10"):
        data.load("npz", str(tmp_path / "huge.npz"))


def test_pixels_beyond_float32_are_refused_naming_the_array(tmp_path):
    x_train = np.zeros((20, 8, 8))
    x_train[3, 2, 2] = 1e300  # finite in float64, inf once cast to the float32 the models use
    arrays = {"x_train": x_train, "y_train": np.arange(20) % 2, "x_test": np.zeros((4, 8, 8))}
    np.savez(tmp_path / "big.npz", **arrays, y_test=np.arange(4) % 2)
    with pytest.raises(DataError, match="x_train has values up to 1e\\+300, beyond float32"):
        data.load("npz", str(tmp_path / "big.npz"))


def test_a_file_that_is_not_a_zip_is_not_a_npz_file(tmp_path):
    path = tmp_path / "fake.npz"
    path.write_bytes(b"\x80\x04 pickled? no, just bytes")
    with pytest.raises(DataError, match="not a .npz file") as err:
        data.load("npz", str(path))
    assert "pickle" not in str(err.value)


def test_unknown_dataset_names_field():
    with pytest.raises(ConfigError) as e:
        data.load("imagenet")
    assert e.value.field == "dataset"


def test_subset_is_seeded(digits):
    a = digits.subset(100, 50, seed=0)
    b = digits.subset(100, 50, seed=0)
    assert len(a.y_train) == 100 and len(a.y_test) == 50
    assert torch.equal(a.x_train, b.x_train)


def test_registry_entries():
    assert set(data.DATASETS) == {"digits", "fashion-mnist", "mnist", "cifar10", "npz"}
    assert {n for n, d in data.DATASETS.items() if d.needs_root} == {"mnist", "cifar10", "npz"}
    assert all(d.name == n and d.label for n, d in data.DATASETS.items())
    with pytest.raises(ConfigError, match="dataset"):
        data.load("imagenet")
