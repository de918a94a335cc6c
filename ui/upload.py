"""Checking and saving an uploaded .npz data set (pure: no Streamlit)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from core import data
from core.errors import DataError

REQUIRED = ("x_train", "y_train", "x_test", "y_test")


def read_npz(content: bytes) -> tuple[dict[str, np.ndarray], list[str]]:
    """Arrays of an .npz file (never unpickled) and the problems found, each naming its array
    (core.data.read_npz: "not a .npz file", "array 'y_train' is an object array", ...)."""
    if len(content) > data.MAX_NPZ_BYTES:
        return {}, [f"the file is larger than {data.MAX_NPZ_BYTES // 2**20} MiB"]
    try:
        return data.read_npz(content, "upload"), []
    except DataError as e:
        return {}, [str(e)]


def problems(arrays: dict[str, np.ndarray]) -> list[str]:
    """Every problem with the arrays: one per missing array, then core.data's checks."""
    found = [
        f"array {k!r} is missing (found {sorted(arrays) or 'none'})" for k in REQUIRED if k not in arrays
    ]
    if found:
        return found
    return data.array_problems(arrays, "upload")


def save(content: bytes, folder: str | Path) -> Path:
    """Write the upload under `folder`/uploads/<sha256>.npz (same content -> same path)."""
    digest = hashlib.sha256(content).hexdigest()[:16]
    path = Path(folder) / "uploads" / f"{digest}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file():
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(content)
        tmp.replace(path)
    return path
