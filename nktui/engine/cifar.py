"""CIFAR-10's python files (`cifar-10-batches-py/`), read without running any code from them.

The files are Python pickles, and `pickle.load` calls whatever function a pickle names (a crafted
`data_batch_1` whose `__reduce__` returns `os.system` runs a shell command). So they are read here with
`SafeUnpickler`, whose `find_class` hands out only what the format needs to rebuild numpy arrays
(`numpy.core.multiarray._reconstruct` and its numpy 2 name, `numpy.ndarray`, `numpy.dtype`, numpy scalars, the
buffer form of pickle protocol 5, and latin-1 bytes as Python 3 writes them in protocol 2) and refuses every
other name with a one-line `DataError` naming the file and the name.

This module owns reading and checking the seven files: `data_batch_1`..`5` (10,000 images each in the real set,
each a row of 3,072 bytes: 1,024 red, 1,024 green, 1,024 blue values, row by row), `test_batch` (read and checked,
not used: validation is a split of the training set) and `batches.meta` (the class names). Keys may be `str`
(the files as `encoding="latin1"` reads them) or `bytes`. Downloading stays torchvision's (the archive's md5 is
checked); `nktui.engine.datasets` calls `load_cifar10` on the files.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..protocol.errors import DataError

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
FILES = TRAIN_FILES + (TEST_FILE, META_FILE)
ROW = 3 * 32 * 32


def _latin1_encode(text: Any, encoding: str = "latin1", *_: Any) -> bytes:
    """`_codecs.encode` as protocol-2 pickles of bytes use it (`encode(str, "latin1")`), and nothing else."""
    if not isinstance(text, str) or encoding.replace("-", "").replace("_", "").lower() not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError("_codecs.encode is admitted only to turn a str into latin-1 bytes")
    return text.encode("latin1")


def _numpy_names() -> dict[tuple[str, str], Any]:
    """(module, name) -> the object, for every name a pickled numpy array may use, under numpy 1's and 2's paths."""
    try:
        from numpy._core import multiarray, numeric  # numpy 2
    except ImportError:  # numpy 1
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    names: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for module in ("numpy.core", "numpy._core"):
        names[(f"{module}.multiarray", "_reconstruct")] = multiarray._reconstruct
        names[(f"{module}.multiarray", "scalar")] = multiarray.scalar
        names[(f"{module}.numeric", "_frombuffer")] = numeric._frombuffer
    names[("_codecs", "encode")] = _latin1_encode
    return names


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds numpy arrays, lists, dicts, numbers and strings, and calls nothing else.

    `label` is how the file is named in the error (`cifar-10-batches-py/data_batch_1`)."""

    _allowed: dict[tuple[str, str], Any] | None = None

    def __init__(self, file, label: str, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self.label = label
        if SafeUnpickler._allowed is None:
            SafeUnpickler._allowed = _numpy_names()

    def find_class(self, module: str, name: str) -> Any:
        found = (self._allowed or {}).get((module, name))
        if found is None:
            raise DataError(
                f"{self.label} is not a plain CIFAR-10 pickle: it asks for {module}.{name}; "
                "nktui does not run code from data files"
            )
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"{self.label} is not a plain CIFAR-10 pickle: it refers to outside objects; "
                        "nktui does not run code from data files")


def read_pickle(path: Path, label: str) -> Any:
    """One file through `SafeUnpickler` (latin-1 for the Python 2 strings of the original files)."""
    try:
        with open(path, "rb") as f:
            return SafeUnpickler(f, label, encoding="latin1").load()
    except DataError:
        raise
    except MemoryError:
        raise DataError(f"{label} is too large to read: it is not a CIFAR-10 batch file") from None
    except Exception as exc:  # UnpicklingError, EOFError, a bad numpy state ...
        text = " ".join(str(exc).split())[:200] or "no details"
        raise DataError(
            f"cannot read cifar10's {label}: {type(exc).__name__}: {text}. The file is damaged or not CIFAR-10's: "
            f"delete the {FOLDER} folder and run again with network access to download fresh copies"
        ) from None


def _get(entry: Any, key: str, label: str, *, alternative: str | None = None) -> Any:
    """entry[key] for str or bytes keys (`alternative`: a second key name, CIFAR-100's `fine_labels`)."""
    if not isinstance(entry, dict):
        raise DataError(f"{label} holds a {type(entry).__name__}, not the dictionary a CIFAR-10 file holds")
    for name in (key, alternative):
        if name is None:
            continue
        for k in (name, name.encode("ascii")):
            if k in entry:
                return entry[k]
    raise DataError(f"{label} has no {key!r} entry (it has {', '.join(map(_key_text, entry)) or 'none'}): "
                    "it is not a CIFAR-10 file")


def _key_text(key: Any) -> str:
    return repr(key.decode("latin1") if isinstance(key, bytes) else key)


def read_batch(path: Path, label: str) -> tuple[np.ndarray, np.ndarray]:
    """(pixels N x 3072 uint8, labels N int64 in 0..9) of one batch file, checked."""
    entry = read_pickle(path, label)
    data = _get(entry, "data", label)
    labels = _get(entry, "labels", label, alternative="fine_labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != ROW:
        what = (f"a {data.dtype} array of shape {' x '.join(map(str, data.shape))}" if isinstance(data, np.ndarray)
                else f"a {type(data).__name__}")
        raise DataError(f"{label}: its data is {what}, not N x {ROW} bytes (uint8): it is not a CIFAR-10 batch")
    try:
        labels = np.asarray(labels)
    except Exception:
        labels = np.asarray([], dtype=object)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(f"{label}: its labels are not a list of whole numbers: it is not a CIFAR-10 batch")
    if len(labels) != len(data):
        raise DataError(f"{label} holds {len(data):,} images but {len(labels):,} labels: the file is damaged")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{label} has labels from {labels.min()} to {labels.max()}, outside 0..9: the file is damaged")
    return data, labels.astype(np.int64)


def read_class_names(path: Path, label: str) -> tuple[str, ...]:
    names = _get(read_pickle(path, label), "label_names", label)
    if not isinstance(names, (list, tuple)) or len(names) != 10 or not all(isinstance(n, (str, bytes)) for n in names):
        raise DataError(f"{label}: its label_names are not the ten class names of CIFAR-10")
    return tuple(n.decode("latin1") if isinstance(n, bytes) else n for n in names)


def load_cifar10(data_dir: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(pixels N x 3 x 32 x 32 uint8, labels N int64, the class names) of CIFAR-10's training batches, in the
    order of the files; every one of the seven files is read and checked first (`DataError` says which is bad)."""
    where = data_dir / FOLDER
    batches = [read_batch(where / name, f"{where / name}") for name in TRAIN_FILES]
    read_batch(where / TEST_FILE, f"{where / TEST_FILE}")  # not used, but not a way in either
    classes = read_class_names(where / META_FILE, f"{where / META_FILE}")
    pixels = np.concatenate([b[0] for b in batches]).reshape(-1, 3, 32, 32)
    labels = np.concatenate([b[1] for b in batches])
    return pixels, labels, classes
