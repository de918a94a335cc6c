"""ui.upload: an uploaded .npz is read without unpickling, checked, and saved by content."""

from __future__ import annotations

import io

import numpy as np

from ui import upload


def npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def good_arrays():
    rng = np.random.default_rng(0)
    return dict(
        x_train=rng.random((20, 8, 8)),
        y_train=np.arange(20) % 4,
        x_test=rng.random((8, 8, 8)),
        y_test=np.arange(8) % 4,
    )


def test_a_valid_file_reads_back_its_arrays():
    arrays, problems = upload.read_npz(npz(**good_arrays()))
    assert problems == [] and upload.problems(arrays) == []
    assert arrays["x_train"].shape == (20, 8, 8) and arrays["y_test"].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]


def test_missing_arrays_objects_and_non_zip_are_named():
    good = good_arrays()
    arrays, _ = upload.read_npz(npz(**{k: v for k, v in good.items() if k != "y_test"}))
    assert upload.problems(arrays) == ["array 'y_test' is missing (found ['x_test', 'x_train', 'y_train'])"]
    _, problems = upload.read_npz(npz(**{**good, "x_train": np.array([{"a": 1}], dtype=object)}))
    assert problems == ["array 'x_train' holds Python objects (pickled data is not accepted)"]
    arrays, problems = upload.read_npz(b"not a zip at all")
    assert arrays == {} and len(problems) == 1 and problems[0].startswith("not a readable .npz file")


def test_the_same_content_is_saved_once_under_its_digest(tmp_path):
    content = npz(**good_arrays())
    first = upload.save(content, tmp_path)
    assert first == upload.save(content, tmp_path) and first.read_bytes() == content
    assert first.parent == tmp_path / "uploads" and first.suffix == ".npz"
    assert upload.save(npz(**{**good_arrays(), "y_test": np.zeros(8, dtype=int)}), tmp_path) != first
