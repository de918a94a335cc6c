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
    # an object array is named as one, not reported as a missing array
    arrays, problems = upload.read_npz(npz(**{**good, "y_train": np.array([{"a": 1}] * 20, dtype=object)}))
    assert arrays == {} and len(problems) == 1
    assert "'y_train' is an object array" in problems[0] and "missing" not in problems[0]
    # bytes that are not a zip: "not a .npz file", with no hint to unpickle anything
    arrays, problems = upload.read_npz(b"not a zip at all")
    assert arrays == {} and problems == ["upload: not a .npz file (an .npz is a zip archive of .npy arrays)"]
    assert "pickle" not in problems[0]


def test_a_label_outside_the_training_classes_is_refused_with_its_array_and_value():
    good = good_arrays()
    y_train = good["y_train"].copy()
    y_train[5] = 42  # 42 among 0..3
    arrays, problems = upload.read_npz(npz(**{**good, "y_train": y_train}))
    assert problems == []
    (problem,) = upload.problems(arrays)
    assert "y_train" in problem and "42" in problem
    y_test = good["y_test"].copy()
    y_test[2] = 42
    (problem,) = upload.problems(upload.read_npz(npz(**{**good, "y_test": y_test}))[0])
    assert "y_test" in problem and "42" in problem


def test_every_problem_of_an_upload_is_listed_at_once():
    good = good_arrays()
    bad = {**good, "y_train": np.arange(19) % 4, "y_test": np.array([-1, 5, 7, 0, 1, 2, 3, 0])}
    bad["x_test"] = bad["x_test"].copy()
    bad["x_test"][0, 0, 0] = np.nan
    found = upload.problems(upload.read_npz(npz(**bad))[0])
    assert found == [
        "upload: x_train has 20 images but y_train has 19 labels",
        "upload: x_test contains NaN or infinite values",
        "upload: y_test has negative labels (min -1)",
    ]


def test_the_same_content_is_saved_once_under_its_digest(tmp_path):
    content = npz(**good_arrays())
    first = upload.save(content, tmp_path)
    assert first == upload.save(content, tmp_path) and first.read_bytes() == content
    assert first.parent == tmp_path / "uploads" and first.suffix == ".npz"
    assert upload.save(npz(**{**good_arrays(), "y_test": np.zeros(8, dtype=int)}), tmp_path) != first
