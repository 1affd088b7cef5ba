"""CIFAR-10's pickles are read by nktui's restricted unpickler: a crafted file is refused and its code never runs.

Each of the seven files gets a malicious object planted in it (its `__reduce__` would create a marker file),
either as an extra entry of an otherwise valid file or as the whole file; the load must fail with one line
naming the file, and the marker must not exist. The same files without the plant load exactly as before, with
str or bytes keys and with every pickle protocol.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nktui.training import DataError, RunConfig
from nktui.engine.cifar import FILES, FOLDER, SafeUnpickler
from nktui.engine.batches import load_data
from nktui.engine.datasets import load_torchvision

CIFAR = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
ROOT = Path(__file__).resolve().parent.parent


class Plant:
    """Unpickling this calls os.system (a shell command creating `marker`) in a plain pickle.load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class PlantOpen:
    """... or builtins.open in write mode, which creates the marker too."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def entries(per_batch: int = 4, *, as_bytes: bool = False, array_labels: bool = False) -> dict[str, dict]:
    """The seven files' contents; image i's first byte is i, so the order can be checked."""
    n = 5 * per_batch
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    rows[:, 0] = np.arange(n)
    labels = [i % 10 for i in range(n)]
    out = {}
    for b in range(5):
        part = slice(b * per_batch, (b + 1) * per_batch)
        batch_labels = np.array(labels[part], dtype=np.int64) if array_labels else labels[part]
        out[f"data_batch_{b + 1}"] = {"batch_label": f"training batch {b + 1} of 5", "data": rows[part],
                                      "labels": batch_labels}
    out["test_batch"] = {"batch_label": "testing batch 1 of 1", "data": rows[:3].copy(), "labels": [0, 1, 2]}
    out["batches.meta"] = {"label_names": list(CIFAR), "num_cases_per_batch": per_batch, "num_vis": 3072}
    if as_bytes:  # keys (and the class names) as bytes
        out = {name: {k.encode(): v for k, v in entry.items()} for name, entry in out.items()}
        out["batches.meta"][b"label_names"] = [c.encode() for c in CIFAR]
    return out


def write(root: Path, contents: dict[str, object], protocol: int = 2) -> Path:
    folder = root / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for name, entry in contents.items():
        (folder / name).write_bytes(pickle.dumps(entry, protocol=protocol))
    return folder


def config(root: Path) -> RunConfig:
    return RunConfig(dataset="cifar10", data_dir=str(root), download=False, batch_size=4, seed=0, device="cpu")


def assert_refused(root: Path, name: str, marker: Path, asks_for: str) -> None:
    with pytest.raises(DataError) as caught:
        load_torchvision("cifar10", root, download=False)
    message = str(caught.value)
    assert "\n" not in message
    assert f"{FOLDER}/{name} is not a plain CIFAR-10 pickle: it asks for {asks_for}" in message
    assert message.endswith("nktui does not run code from data files")
    assert not marker.exists(), "the planted code ran"


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("how", ["extra entry", "whole file"])
def test_a_planted_reduce_in_any_file_is_refused_and_never_runs(tmp_path, name, how):
    marker = tmp_path / "marker"
    contents = entries()
    if how == "extra entry":  # otherwise valid: every key the reader looks at is right
        contents[name] = {**contents[name], "extra": Plant(marker)}
    else:
        contents[name] = Plant(marker)
    write(tmp_path, contents)
    assert_refused(tmp_path, name, marker, f"{os.system.__module__}.system")


@pytest.mark.parametrize("name", ["data_batch_3", "batches.meta"])
def test_other_callables_are_refused_too(tmp_path, name):
    marker = tmp_path / "marker"
    contents = entries()
    contents[name] = {**contents[name], "extra": PlantOpen(marker)}
    write(tmp_path, contents, protocol=4)
    assert_refused(tmp_path, name, marker, f"{open.__module__}.open")


def test_the_plant_would_have_run_under_plain_pickle(tmp_path):
    """The control: the planted file is really malicious (a plain pickle.load creates the marker)."""
    marker = tmp_path / "marker"
    folder = write(tmp_path, {**entries(), "data_batch_1": {**entries()["data_batch_1"], "extra": Plant(marker)}})
    code = f"import pickle; pickle.load(open({str(folder / 'data_batch_1')!r}, 'rb'), encoding='latin1')"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    assert marker.exists()


def test_a_refused_file_is_one_line_and_exit_2_from_nktui_train(tmp_path):
    marker = tmp_path / "marker"
    contents = entries()
    contents["test_batch"] = {**contents["test_batch"], "extra": Plant(marker)}
    write(tmp_path, contents)
    proc = subprocess.run(
        [sys.executable, "-m", "nktui", "train", "--dataset", "cifar10", "--data-dir", str(tmp_path), "--no-download",
         "--steps", "2", "--batch-size", "4", "--device", "cpu"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("nktui: error: ") and "test_batch is not a plain CIFAR-10 pickle" in lines[0]
    assert not marker.exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("keys", ["str", "bytes"])
def test_valid_files_load_exactly(tmp_path, protocol, keys):
    contents = entries(as_bytes=keys == "bytes", array_labels=protocol == 5)
    write(tmp_path, contents, protocol=protocol)
    images = load_torchvision("cifar10", tmp_path, download=False)
    key = (lambda k: k.encode()) if keys == "bytes" else (lambda k: k)
    rows = np.concatenate([contents[f"data_batch_{b}"][key("data")] for b in range(1, 6)])
    labels = np.concatenate([np.asarray(contents[f"data_batch_{b}"][key("labels")]) for b in range(1, 6)])
    assert images.classes == CIFAR and images.pixels.dtype == torch.uint8 and images.labels.dtype == torch.int64
    assert images.pixels.shape == (20, 3, 32, 32) and images.pixels.is_contiguous()
    assert torch.equal(images.pixels, torch.from_numpy(rows.reshape(20, 3, 32, 32)))
    assert torch.equal(images.pixels[:, 0, 0, 0], torch.arange(20, dtype=torch.uint8))  # file order
    assert torch.equal(images.labels, torch.from_numpy(labels))
    assert load_data(config(tmp_path), torch.device("cpu")).input_shape == (3, 32, 32)


def test_the_same_image_set_as_torchvision_reads(tmp_path):
    """nktui's reader gives what torchvision's CIFAR10 gave before (permuted back to N x C x H x W)."""
    from torchvision.datasets import CIFAR10

    class Unchecked(CIFAR10):
        train_list = [[f, None] for f, _ in CIFAR10.train_list]
        test_list = [[f, None] for f, _ in CIFAR10.test_list]
        meta = {**CIFAR10.meta, "md5": None}

    write(tmp_path, entries())
    theirs = Unchecked(root=str(tmp_path), train=True)
    ours = load_torchvision("cifar10", tmp_path, download=False)
    assert torch.equal(ours.pixels, torch.as_tensor(theirs.data).permute(0, 3, 1, 2).contiguous())
    assert ours.labels.tolist() == theirs.targets and list(ours.classes) == theirs.classes


BAD = {
    "no data": (lambda e: {"labels": e["labels"]}, "has no 'data' entry"),
    "float data": (lambda e: {**e, "data": e["data"].astype(np.float32)}, "not N x 3072 bytes"),
    "short rows": (lambda e: {**e, "data": e["data"][:, :100]}, "not N x 3072 bytes"),
    "data a list": (lambda e: {**e, "data": e["data"].tolist()}, "its data is a list"),
    "labels too few": (lambda e: {**e, "labels": e["labels"][:-1]}, "4 images but 3 labels"),
    "label 10": (lambda e: {**e, "labels": [10] * len(e["labels"])}, "outside 0..9"),
    "labels text": (lambda e: {**e, "labels": ["cat"] * len(e["labels"])}, "not a list of whole numbers"),
    "not a dict": (lambda e: [e], "holds a list, not the dictionary"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_wrong_shapes_are_clear_errors(tmp_path, case):
    change, phrase = BAD[case]
    contents = entries()
    contents["data_batch_2"] = change(contents["data_batch_2"])
    write(tmp_path, contents)
    with pytest.raises(DataError, match="data_batch_2") as caught:
        load_torchvision("cifar10", tmp_path, download=False)
    assert phrase in str(caught.value) and "\n" not in str(caught.value)


def test_bad_class_names_and_truncated_files(tmp_path):
    contents = entries()
    contents["batches.meta"] = {"label_names": ["a", "b"]}
    write(tmp_path, contents)
    with pytest.raises(DataError, match="batches.meta: its label_names are not the ten class names"):
        load_torchvision("cifar10", tmp_path, download=False)
    write(tmp_path, entries())
    batch = tmp_path / FOLDER / "data_batch_5"
    batch.write_bytes(batch.read_bytes()[:500])
    with pytest.raises(DataError, match="cannot read cifar10's .*data_batch_5: .*download fresh copies"):
        load_torchvision("cifar10", tmp_path, download=False)


def test_the_unpickler_admits_only_numpy_arrays():
    import io

    assert SafeUnpickler(io.BytesIO(pickle.dumps({"a": [1, 2.0, "x", b"y"]})), "f").load() == {"a": [1, 2.0, "x", b"y"]}
    for obj in (np.arange(3), np.float32(1.5), np.dtype("u1")):
        for protocol in (2, 5):
            back = SafeUnpickler(io.BytesIO(pickle.dumps(obj, protocol=protocol)), "f", encoding="latin1").load()
            assert np.array_equal(back, obj) if isinstance(obj, np.ndarray) else back == obj
    for obj in (print, os.getcwd, subprocess.Popen, Path("x")):
        with pytest.raises(DataError, match="f is not a plain CIFAR-10 pickle: it asks for"):
            SafeUnpickler(io.BytesIO(pickle.dumps(obj)), "f").load()
