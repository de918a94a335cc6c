"""Data sets as tensors: `load(name, root=None)` -> Dataset; registry `DATASETS`.

Images are N×C×H×W float32 scaled to [0, 1] (so a trigger of value 1.0 is the brightest
pixel); labels are int64. Nothing is downloaded: `digits` ships with scikit-learn,
Fashion-MNIST comes from the Debian package `dataset-fashion-mnist`, MNIST and CIFAR-10 from a
local folder the user points to, `npz` from a user file.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from core.errors import ConfigError, DataError

FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
CIFAR_CLASSES = "airplane automobile bird cat deer dog frog horse ship truck".split()
MAX_NPZ_BYTES = 512 * 2**20


@dataclass
class Dataset:
    """A train/test split of images. Shapes: x_* N×C×H×W float32 in [0, 1], y_* N int64."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]
    info: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def train(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_train, y_train)."""
        return self.x_train, self.y_train

    @property
    def test(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_test, y_test)."""
        return self.x_test, self.y_test

    def subset(self, train_size: int | None = None, test_size: int | None = None, seed: int = 0):
        """A seeded random subset of the train and/or test split (None keeps all)."""
        g = torch.Generator().manual_seed(seed)

        def pick(x: torch.Tensor, y: torch.Tensor, n: int | None, which: str):
            if n is None or n >= len(y):
                return x, y
            if n < 1:
                raise ConfigError(which, f"must be a positive integer, got {n}")
            idx = torch.randperm(len(y), generator=g)[:n].sort().values
            return x[idx], y[idx]

        x_tr, y_tr = pick(self.x_train, self.y_train, train_size, "train_size")
        x_te, y_te = pick(self.x_test, self.y_test, test_size, "test_size")
        return Dataset(self.name, x_tr, y_tr, x_te, y_te, self.classes, dict(self.info))


def _tensors(x: np.ndarray, y: np.ndarray, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    x = np.asarray(x, dtype=np.float32) / scale
    if x.ndim == 3:
        x = x[:, None]
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.asarray(y, np.int64))


def _digits(root: str | None, seed: int = 0) -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.images.astype(np.float32)  # 1797×8×8, values 0..16
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, d.target, test_size=0.25, stratify=d.target, random_state=seed
    )
    x_train, y_train = _tensors(x_tr, y_tr, 16.0)
    x_test, y_test = _tensors(x_te, y_te, 16.0)
    classes = [str(i) for i in range(10)]
    return Dataset("digits", x_train, y_train, x_test, y_test, classes, {"source": "sklearn"})


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not: magic, dims, big-endian uint8 data."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path}: not an IDX file of unsigned bytes (bad magic number)")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(
            f"{path}: expected {int(np.prod(dims))} values for shape {dims}, "
            f"found {body.size} (truncated file?)"
        )
    return body.reshape(dims)


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write uint8 `array` as an IDX file (gzipped when the name ends in .gz). Used by tests."""
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())


def _find_idx(dirs: list[Path], stem: str) -> Path | None:
    for d in dirs:
        for candidate in (d / stem, d / f"{stem}.gz", d / stem.replace("-idx", ".idx")):
            if candidate.is_file():
                return candidate
    return None


def _idx_dataset(name: str, dirs: list[Path], classes: list[str], how_to_get: str) -> Dataset:
    arrays, missing = {}, []
    for key, stem in IDX_FILES.items():
        path = _find_idx(dirs, stem)
        if path is None:
            missing.append(stem)
        else:
            arrays[key] = read_idx(path)
    if missing:
        searched = ", ".join(str(d) for d in dirs) or "(no folder given)"
        raise DataError(f"{name}: missing {', '.join(missing)}(.gz) — searched {searched}. {how_to_get}")
    x_train, y_train = _tensors(arrays["x_train"], arrays["y_train"], 255.0)
    x_test, y_test = _tensors(arrays["x_test"], arrays["y_test"], 255.0)
    return Dataset(name, x_train, y_train, x_test, y_test, classes, {"source": str(dirs)})


def _root_dirs(root: str | None, *defaults: str) -> list[Path]:
    dirs = [Path(root).expanduser()] if root else []
    return dirs + [Path(d) for d in defaults]


def _fashion_mnist(root: str | None, seed: int = 0) -> Dataset:
    # a root the user gives is the only place searched: a missing or empty folder is an error,
    # not a silent fall-back to the system copy
    if root and not Path(root).expanduser().is_dir():
        raise DataError(f"fashion-mnist: root {root} is not a folder (leave root empty for the system copy)")
    return _idx_dataset(
        "fashion-mnist",
        _root_dirs(root) + [Path(root).expanduser() / "raw"]
        if root
        else _root_dirs(None, *FASHION_MNIST_DIRS),
        FASHION_CLASSES,
        "Install it with `apt-get install dataset-fashion-mnist` or pass root=FOLDER "
        "holding the four IDX files.",
    )


def _mnist(root: str | None, seed: int = 0) -> Dataset:
    dirs = _root_dirs(root) + ([Path(root) / "raw"] if root else [])
    if root is None:
        raise DataError(
            "mnist: no root folder given. Point `root` to a folder holding "
            "train-images-idx3-ubyte(.gz) and the other three IDX files."
        )
    return _idx_dataset(
        "mnist",
        dirs,
        [str(i) for i in range(10)],
        "Copy the four MNIST IDX files there (nothing is downloaded).",
    )


def _cifar10(root: str | None, seed: int = 0) -> Dataset:
    if root is None:
        raise DataError(
            "cifar10: no root folder given. Point `root` to the folder "
            "`cifar-10-batches-py` (or its parent) from the python version."
        )
    base = Path(root).expanduser()
    dirs = [base, base / "cifar-10-batches-py"]
    folder = next((d for d in dirs if (d / "data_batch_1").is_file()), None)
    if folder is None:
        raise DataError(
            f"cifar10: data_batch_1 not found — searched {', '.join(map(str, dirs))}. "
            "Unpack cifar-10-python.tar.gz there (nothing is downloaded)."
        )

    def read(name: str) -> tuple[np.ndarray, np.ndarray]:
        path = folder / name
        if not path.is_file():
            raise DataError(f"cifar10: missing {path}")
        # The CIFAR batches are pickles of plain dicts; a restricted unpickler refuses any
        # class so a tampered file cannot run code.
        with open(path, "rb") as f:
            batch = _SafeUnpickler(f, encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        return data, np.asarray(batch[b"labels"], dtype=np.int64)

    parts = [read(f"data_batch_{i}") for i in range(1, 6) if (folder / f"data_batch_{i}").exists()]
    x_tr = np.concatenate([p[0] for p in parts])
    y_tr = np.concatenate([p[1] for p in parts])
    x_te, y_te = read("test_batch")
    x_train, y_train = _tensors(x_tr, y_tr, 255.0)
    x_test, y_test = _tensors(x_te, y_te, 255.0)
    return Dataset("cifar10", x_train, y_train, x_test, y_test, CIFAR_CLASSES, {"source": str(folder)})


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numpy arrays: a tampered file cannot run code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return getattr(__import__(module, fromlist=[name]), name)
        raise DataError(f"refusing to unpickle {module}.{name}: CIFAR batches hold only dicts")


def validate_arrays(arrays: dict[str, np.ndarray], source: str = "npz") -> None:
    """Check x_train, y_train, x_test, y_test: presence, shapes, dtypes, label range. Raises
    DataError with the first problem (`array_problems` lists them all)."""
    found = array_problems(arrays, source)
    if found:
        raise DataError(found[0])


def array_problems(arrays: dict[str, np.ndarray], source: str = "npz") -> list[str]:
    """Every problem of the arrays, each naming `source` and the array: a check that needs an
    earlier one to pass (the label range needs integer labels) runs only when it did."""
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays]
    if missing:
        return [
            f"{source}: array {k!r} is missing; expected x_train, y_train, x_test, y_test "
            f"(found {sorted(arrays)})"
            for k in missing
        ]
    out: list[str] = []
    good_x, good_y = True, True
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        n = len(out)
        if x.dtype.kind not in "uif" or x.ndim not in (3, 4):
            out.append(
                f"{source}: x_{split} must be numeric images N×H×W or N×C×H×W, "
                f"got dtype {x.dtype} shape {x.shape}"
            )
        elif x.ndim == 4 and x.shape[1] not in (1, 3):
            out.append(
                f"{source}: x_{split} has {x.shape[1]} channels; expected 1 or 3 (N×C×H×W, channels first)"
            )
        elif min(x.shape[-2:]) < 4 or len(x) == 0:
            out.append(f"{source}: x_{split} images must be at least 4×4 and non-empty, got shape {x.shape}")
        elif not np.isfinite(x).all():
            out.append(f"{source}: x_{split} contains NaN or infinite values")
        elif x.dtype.kind == "f" and x.dtype.itemsize > 4 and np.abs(x).max() > np.finfo(np.float32).max:
            out.append(
                f"{source}: x_{split} has values up to {np.abs(x).max():.3g}, beyond float32's range "
                "(pixels are stored as float32); rescale the images"
            )
        good_x = good_x and len(out) == n
        m = len(out)
        if y.ndim != 1 or y.dtype.kind not in "iu":
            out.append(
                f"{source}: y_{split} must be a 1-D integer array, got dtype {y.dtype} shape {y.shape}"
            )
        else:
            if len(y) and y.min() < 0:
                out.append(f"{source}: y_{split} has negative labels (min {y.min()})")
            if x.ndim >= 1 and len(y) != len(x):
                out.append(f"{source}: x_{split} has {len(x)} images but y_{split} has {len(y)} labels")
        good_y = good_y and len(out) == m
    if good_x and arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        out.append(
            f"{source}: x_train images {arrays['x_train'].shape[1:]} and x_test "
            f"images {arrays['x_test'].shape[1:]} differ in shape"
        )
    if good_y and len(arrays["y_train"]):
        try:
            check_classes(arrays["y_train"], arrays["y_test"], source)
        except DataError as e:
            out.append(str(e))
    return out


def check_classes(y_train: np.ndarray, y_test: np.ndarray, source: str = "npz") -> int:
    """The classes are those of the training set, 0..K−1, every one present in y_train (K ≥ 2),
    and y_test holds only those: a stray label (42 among 0..9) is refused, naming the array and
    the value, instead of making a 43-class problem. Returns K."""
    present = np.unique(y_train)
    n_classes = int(present.max()) + 1
    if len(present) < 2:
        raise DataError(f"{source}: y_train must hold at least 2 classes, found {present.tolist()}")
    if len(present) != n_classes:  # a gap: the labels above it are strays (42 among 0..9)
        # the first missing class, from the sorted labels present (never range(max label): a
        # stray label of 2**40 would build a set of 2**40 integers)
        missing = np.nonzero(present != np.arange(len(present)))[0]
        gap = int(missing[0]) if len(missing) else len(present)
        stray = present[present > gap].tolist()
        raise DataError(
            f"{source}: y_train has label {stray[0]}{' (and more)' if len(stray) > 1 else ''} but no "
            f"sample of class {gap}; labels must be the classes 0..K−1 of the training set"
        )
    stray = sorted(set(np.unique(y_test).tolist()) - set(present.tolist()))
    if stray:
        raise DataError(
            f"{source}: y_test has label {stray[0]}"
            + (f" (and {len(stray) - 1} more)" if len(stray) > 1 else "")
            + f" not among the classes of y_train (0..{n_classes - 1})"
        )
    return n_classes


def from_arrays(arrays: dict[str, np.ndarray], name: str = "npz") -> Dataset:
    """Dataset from validated numpy arrays; pixel values are scaled to [0, 1] by their max."""
    validate_arrays(arrays, name)
    x_tr, x_te = arrays["x_train"].astype(np.float32), arrays["x_test"].astype(np.float32)
    lo = min(x_tr.min(), x_te.min())
    hi = max(x_tr.max(), x_te.max())
    scale = float(hi - lo) or 1.0
    x_train, y_train = _tensors(x_tr - lo, arrays["y_train"], scale)
    x_test, y_test = _tensors(x_te - lo, arrays["y_test"], scale)
    n_classes = int(arrays["y_train"].max()) + 1  # validated: every class 0..K−1 is present
    return Dataset(name, x_train, y_train, x_test, y_test, [str(i) for i in range(n_classes)])


def read_npz(content: bytes, source: str = "npz") -> dict[str, np.ndarray]:
    """The arrays of an .npz file's bytes, never unpickled. DataError (naming `source`) when the
    bytes are not a zip ("not a .npz file"), an entry is not a readable .npy array, or an array
    holds Python objects (named: "array 'y_train' is an object array")."""
    if not zipfile.is_zipfile(io.BytesIO(content)):
        raise DataError(f"{source}: not a .npz file (an .npz is a zip archive of .npy arrays)")
    try:
        archive = np.load(io.BytesIO(content), allow_pickle=False)
    except Exception as e:  # a zip, but not one numpy can open
        raise DataError(f"{source}: not a readable .npz file ({type(e).__name__})") from e
    arrays: dict[str, np.ndarray] = {}
    with archive as f:
        for key in f.files:
            try:
                arrays[key] = f[key]
            except ValueError as e:  # numpy refuses object arrays without pickle
                raise DataError(
                    f"{source}: array {key!r} is an object array (Python objects); "
                    "only numeric arrays are accepted"
                ) from e
            except Exception as e:  # a corrupt member
                raise DataError(f"{source}: array {key!r} cannot be read ({type(e).__name__})") from e
    return arrays


def load_npz(path: str | os.PathLike | None) -> Dataset:
    """A user's .npz with x_train, y_train, x_test, y_test (never unpickled)."""
    if path is None:
        raise DataError(
            "npz: no file given; set `root` to the path of a .npz file with x_train, y_train, x_test, y_test"
        )
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"npz: file {path} not found")
    if path.stat().st_size > MAX_NPZ_BYTES:
        raise DataError(f"npz: {path} is larger than {MAX_NPZ_BYTES // 2**20} MiB")
    arrays = read_npz(path.read_bytes(), str(path))
    return from_arrays(arrays, "npz")


@dataclass(frozen=True)
class Source:
    """A registry entry: `loader(root, seed) -> Dataset`; `needs_root`: only with a user path."""

    name: str
    label: str
    loader: Callable[..., Dataset]
    needs_root: bool


DATASETS: dict[str, Source] = {
    d.name: d
    for d in (
        Source("digits", "Digits (8×8, scikit-learn)", _digits, needs_root=False),
        Source("fashion-mnist", "Fashion-MNIST (28×28)", _fashion_mnist, needs_root=False),
        Source("mnist", "MNIST (28×28, local files)", _mnist, needs_root=True),
        Source("cifar10", "CIFAR-10 (32×32×3, local files)", _cifar10, needs_root=True),
        Source("npz", "Your .npz file", lambda root, seed=0: load_npz(root), needs_root=True),
    )
}


def load(name: str = "digits", root: str | None = None, *, seed: int = 0) -> Dataset:
    """Load data set `name` (a key of DATASETS) from `root`.

    `seed` fixes the digits train/test split (stratified, 25 % test); file-based data sets
    come with their own split.
    """
    if name not in DATASETS:
        raise ConfigError("dataset", f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    return DATASETS[name].loader(root, seed=seed)
