"""The data layer: real on-disk formats written here (MNIST idx, CIFAR-10 pickles, PNG folders) read back through
`load_data`; the seeded split and batch order; streaming; and every error a user can run into. Nothing downloads:
an autouse fixture makes any network access fail, and download tests replace torchvision's `download` method."""

from __future__ import annotations

import gzip
import math
import pickle
import re
import shutil
import struct
import subprocess
import urllib.request
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from PIL import Image

import nktui.engine.batches as data_module
from nktui.training import ConfigError, DataError, RunConfig, Trainer
from nktui.engine.batches import BatchOrder, StreamSource, TensorSource, load_data, split_indices
from nktui.engine.datasets import ImageSet, load_digits

CPU = torch.device("cpu")
FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
CIFAR = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to reach the network fails the test loudly instead of hanging or downloading."""
    import torchvision.datasets.utils as tv_utils

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to use the network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(tv_utils, "download_url", refuse)


# -- writers for torchvision's on-disk formats -------------------------------------------------------------------
def images_with_ids(n: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Random uint8 images whose first value is the image's number, so each can be found again after the split."""
    x = np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)
    x.reshape(n, -1)[:, 0] = np.arange(n)
    x.reshape(n, -1)[:, 1] = 255  # every image has a full-intensity value: the top of the scaled range
    return x


def write_idx(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    magic = 0x800 + array.ndim  # 2051 for images, 2049 for labels: big-endian, unsigned bytes
    path.write_bytes(struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes())


def write_mnist(root: Path, folder: str = "MNIST", n: int = 50, t10k: bool = True) -> tuple[np.ndarray, np.ndarray]:
    x, y = images_with_ids(n, (28, 28)), np.arange(n, dtype=np.uint8) % 10
    raw = root / folder / "raw"
    write_idx(raw / "train-images-idx3-ubyte", x)
    write_idx(raw / "train-labels-idx1-ubyte", y)
    if t10k:  # torchvision insists on the test files too, though only the training set is used
        write_idx(raw / "t10k-images-idx3-ubyte", images_with_ids(10, (28, 28), seed=1))
        write_idx(raw / "t10k-labels-idx1-ubyte", np.arange(10, dtype=np.uint8))
    return x[:, None], y


def write_cifar(root: Path, per_batch: int = 8) -> tuple[np.ndarray, np.ndarray]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    n = 5 * per_batch
    rows, labels = images_with_ids(n, (3072,)), [i % 10 for i in range(n)]
    for b in range(5):  # rows are 1024 red, 1024 green, 1024 blue values; keys as torchvision reads them
        part = slice(b * per_batch, (b + 1) * per_batch)
        entry = {"batch_label": f"training batch {b + 1} of 5", "data": rows[part], "labels": labels[part]}
        (folder / f"data_batch_{b + 1}").write_bytes(pickle.dumps(entry, protocol=2))
    test = {"batch_label": "testing batch 1 of 1", "data": images_with_ids(4, (3072,), 1), "labels": [0, 1, 2, 3]}
    (folder / "test_batch").write_bytes(pickle.dumps(test, protocol=2))
    meta = {"label_names": list(CIFAR), "num_cases_per_batch": per_batch, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return rows.reshape(n, 3, 32, 32), np.array(labels)


def write_folder(root: Path, counts: dict[str, int], size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """PNG images, one subfolder per class; every third one grayscale (loaded as three equal channels)."""
    xs, ys, i = [], [], 0
    for label, (name, count) in enumerate(sorted(counts.items())):
        (root / name).mkdir(parents=True)
        for _ in range(count):
            rgb = images_with_ids(1, (size, size, 3), seed=i)[0]
            rgb[0, 0] = i  # the image's number, in all three channels
            if i % 3 == 2:
                Image.fromarray(rgb[..., 0], mode="L").save(root / name / f"{i}.png")
                rgb = np.repeat(rgb[..., :1], 3, axis=2)
            else:
                Image.fromarray(rgb, mode="RGB").save(root / name / f"{i}.png")
            xs.append(rgb.transpose(2, 0, 1))
            ys.append(label)
            i += 1
    return np.stack(xs), np.array(ys)


def config(dataset: str, tmp_path: Path, **overrides) -> RunConfig:
    values = dict(dataset=dataset, data_dir=str(tmp_path), download=False, batch_size=4, seed=0, device="cpu")
    values.update(overrides)
    return RunConfig(**values)


def everything(source) -> tuple[torch.Tensor, torch.Tensor]:
    """Both splits, whole: pixels and labels."""
    parts = list(source.eval_batches("train", batch_size=7)) + list(source.eval_batches("val", batch_size=7))
    return torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])


def assert_same_images(source, written_x: np.ndarray, written_y: np.ndarray) -> None:
    """Every written image and label comes back exactly once, scaled to [0, 1] (found by its number)."""
    x, y = everything(source)
    assert x.dtype == torch.float32 and x.min() >= 0 and x.max() == 1.0
    assert source.train_size + source.val_size == len(written_x) == len(x)
    as_bytes = (x * 255).round().to(torch.uint8)
    ids = as_bytes.reshape(len(x), -1)[:, 0].long()
    assert sorted(ids.tolist()) == list(range(len(written_x)))
    order = torch.argsort(ids)
    assert torch.equal(as_bytes[order], torch.from_numpy(written_x))
    assert torch.equal(y[order], torch.from_numpy(written_y).long())


def train_a_little(cfg: RunConfig) -> Trainer:
    trainer = Trainer(cfg)
    losses = [trainer.step().loss for _ in range(3)]
    assert all(math.isfinite(v) for v in losses)
    result = trainer.evaluate()
    assert 0 <= result.accuracy <= 1 and len(result.confusion) == trainer.data.num_classes
    return trainer


# -- the formats, read back --------------------------------------------------------------------------------------
def test_digits_are_bundled_and_scaled_to_one():
    source = load_data(RunConfig(), CPU)
    x, y = everything(source)
    assert source.classes == tuple("0123456789") and source.input_shape == (1, 8, 8)
    assert len(x) == 1797 and x.min() == 0 and x.max() == 1.0  # pixels 0..16 times 1/16
    assert torch.equal(torch.bincount(y), torch.bincount(load_digits().labels))
    assert ((x * 16).round() == x * 16).all()  # exact sixteenths: the scale is 1/16, not 1/255


@pytest.mark.parametrize(
    "dataset, folder, classes", [("mnist", "MNIST", tuple("0123456789")), ("fashion-mnist", "FashionMNIST", FASHION)]
)
def test_mnist_idx_files_load_exactly(tmp_path, dataset, folder, classes):
    x, y = write_mnist(tmp_path, folder)
    source = load_data(config(dataset, tmp_path), CPU)
    assert isinstance(source, TensorSource)
    assert source.classes == classes and source.input_shape == (1, 28, 28)
    assert (source.train_size, source.val_size) == (40, 10)
    assert_same_images(source, x, y)
    batch_x, batch_y = source.train_batch(0)
    assert batch_x.shape == (4, 1, 28, 28) and batch_y.dtype == torch.int64


def test_cifar10_pickles_load_exactly(tmp_path):
    x, y = write_cifar(tmp_path)
    source = load_data(config("cifar10", tmp_path), CPU)
    assert source.classes == CIFAR and source.input_shape == (3, 32, 32)
    assert_same_images(source, x, y)


def test_image_folder_loads_exactly_with_grayscale_as_rgb(tmp_path):
    x, y = write_folder(tmp_path / "pets", {"cat": 7, "dog": 6, "emu": 5})
    (tmp_path / "pets" / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / "pets" / ".ipynb_checkpoints").mkdir()  # hidden: not a class
    source = load_data(config(f"imagefolder:{tmp_path / 'pets'}", tmp_path, image_size=8), CPU)
    assert source.classes == ("cat", "dog", "emu") and source.input_shape == (3, 8, 8)
    assert source.name == "imagefolder:pets"
    assert_same_images(source, x, y)


def test_image_folder_resizes_every_image_to_image_size(tmp_path):
    for name, shape in [("a", (20, 10, 3)), ("b", (5, 9, 3)), ("b2", (12, 12, 4))]:
        (tmp_path / name[0]).mkdir(exist_ok=True)
        mode = "RGBA" if shape[2] == 4 else "RGB"
        Image.fromarray(np.full(shape, 200, np.uint8), mode=mode).save(tmp_path / name[0] / f"{name}.png")
    source = load_data(config(f"imagefolder:{tmp_path}", tmp_path, image_size=6, batch_size=1), CPU)
    x, _ = everything(source)
    assert x.shape == (3, 3, 6, 6) and torch.allclose(x, torch.full_like(x, 200 / 255))


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path):
    values = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 4369)  # 0 .. 65535
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        Image.fromarray(values).save(tmp_path / name / "x.png")
    source = load_data(config(f"imagefolder:{tmp_path}", tmp_path, image_size=4, batch_size=1), CPU)
    x, _ = everything(source)
    expected = torch.from_numpy(values / 65535).float()
    assert torch.allclose(x[0, 0], expected, atol=1 / 255) and torch.equal(x[0, 0], x[0, 2])


@pytest.mark.parametrize("kind", ["mnist", "fashion-mnist", "cifar10", "imagefolder"])
def test_a_short_training_run_on_each_format(tmp_path, kind):
    if kind == "cifar10":
        write_cifar(tmp_path)
    elif kind == "imagefolder":
        write_folder(tmp_path / "f", {"x": 10, "y": 10})
        kind = f"imagefolder:{tmp_path / 'f'}"
    else:
        write_mnist(tmp_path, "MNIST" if kind == "mnist" else "FashionMNIST")
    trainer = train_a_little(config(kind, tmp_path, model="cnn", image_size=8, lr=0.05))
    assert trainer.step_count == 3


# -- the split and the batch order -------------------------------------------------------------------------------
def test_split_is_seeded_disjoint_and_complete():
    train, val = split_indices(100, 0.2, seed=3)
    assert len(val) == 20 and sorted(torch.cat([train, val]).tolist()) == list(range(100))
    again = split_indices(100, 0.2, seed=3)
    assert torch.equal(train, again[0]) and torch.equal(val, again[1])
    assert not torch.equal(val, split_indices(100, 0.2, seed=4)[1])
    assert [len(p) for p in split_indices(2, 0.9, 0)] == [1, 1]  # both sides keep a sample
    assert [len(p) for p in split_indices(1, 0.5, 0)] == [1, 0]
    for seed in (2**70, -5):  # any Python int works as a seed
        assert len(split_indices(10, 0.5, seed)[1]) == 5


def test_batch_order_is_a_pure_function_of_the_step():
    order = BatchOrder(10, 3, seed=1)
    assert order.steps_per_epoch == 3  # the last partial batch is dropped
    steps = [order.indices(s).tolist() for s in range(9)]
    assert [BatchOrder(10, 3, seed=1).indices(s).tolist() for s in (7, 2, 5)] == [steps[7], steps[2], steps[5]]
    assert order.indices(2).tolist() == steps[2]  # back to epoch 0 after reading epoch 2
    for epoch in range(3):
        seen = sum(steps[3 * epoch : 3 * epoch + 3], [])
        assert len(set(seen)) == 9 and set(seen) <= set(range(10))
    assert steps[0:3] != steps[3:6] != steps[6:9]
    assert [BatchOrder(10, 3, seed=2).indices(s).tolist() for s in range(3)] != steps[:3]
    assert len(BatchOrder(5, 5, seed=2**80).indices(4)) == 5


def test_float_cache_and_per_batch_scaling_agree(monkeypatch):
    cached = load_data(RunConfig(batch_size=16), CPU)
    monkeypatch.setattr(data_module, "FLOAT_CACHE_LIMIT_BYTES", 0)
    per_batch = load_data(RunConfig(batch_size=16), CPU)
    assert per_batch.train_x.dtype == torch.uint8 and cached.train_x.dtype == torch.float32
    for step in (0, 1, 500):
        assert all(torch.equal(a, b) for a, b in zip(cached.train_batch(step), per_batch.train_batch(step)))


def test_float_pixels_given_with_a_scale_are_scaled():
    pixels = torch.arange(2 * 4, dtype=torch.float32).reshape(2, 1, 2, 2) * 36
    images = ImageSet("mine", pixels, torch.tensor([0, 1]), ("a", "b"), scale=1 / 255)
    x, _ = everything(TensorSource(images, CPU, 0.5, 1, 0))
    assert x.max() <= 1 and torch.allclose(x.sort(0).values.flatten(), (pixels / 255).sort(0).values.flatten())


# -- streaming ---------------------------------------------------------------------------------------------------
@pytest.fixture
def folder_pair(tmp_path, monkeypatch):
    """An image folder loaded in memory and streamed (workers=0), same config."""
    write_folder(tmp_path / "f", {"a": 12, "b": 11})
    cfg = config(f"imagefolder:{tmp_path / 'f'}", tmp_path, image_size=8, val_fraction=0.25)
    in_memory = load_data(cfg, CPU)
    monkeypatch.setattr(data_module, "IN_MEMORY_LIMIT_BYTES", 100)
    return cfg, in_memory, load_data(cfg, CPU, workers=0)


def test_streamed_batches_equal_in_memory_batches_in_order_and_after_jumps(folder_pair):
    _, in_memory, streamed = folder_pair
    assert isinstance(in_memory, TensorSource) and isinstance(streamed, StreamSource)
    assert (streamed.name, streamed.classes, streamed.input_shape) == (in_memory.name, in_memory.classes, (3, 8, 8))
    assert (streamed.train_size, streamed.val_size, streamed.steps_per_epoch) == (17, 6, 4)
    for step in [*range(10), 37, 38, 3, 4, 0]:  # in order across epochs, then a resume ahead and a rewind
        (xs, ys), (xm, ym) = streamed.train_batch(step), in_memory.train_batch(step)
        assert xs.dtype == torch.float32 and torch.equal(xs, xm) and torch.equal(ys, ym), step
    for split in ("val", "train"):
        got = list(streamed.eval_batches(split, batch_size=4))
        want = list(in_memory.eval_batches(split, batch_size=4))
        assert len(got) == len(want) == math.ceil(streamed.split_size(split) / 4)
        assert torch.equal(torch.cat([x for x, _ in got]), torch.cat([x for x, _ in want]))
        assert torch.equal(torch.cat([y for _, y in got]), torch.cat([y for _, y in want]))


def test_streaming_with_worker_processes(folder_pair):
    cfg, in_memory, _ = folder_pair
    streamed = load_data(cfg, CPU, workers=2)
    for step in (0, 1, 2, 9):
        assert torch.equal(streamed.train_batch(step)[0], in_memory.train_batch(step)[0])
    assert sum(len(y) for _, y in streamed.eval_batches()) == streamed.val_size


def test_a_streamed_run_trains_exactly_like_an_in_memory_one(folder_pair, monkeypatch):
    cfg, _, _ = folder_pair
    monkeypatch.setattr(data_module, "STREAM_WORKERS", 0)
    streamed = Trainer(cfg.replace(model="mlp", hidden=(16,)))
    assert isinstance(streamed.data, StreamSource)
    monkeypatch.setattr(data_module, "IN_MEMORY_LIMIT_BYTES", 1 << 30)
    in_memory = Trainer(cfg.replace(model="mlp", hidden=(16,)))
    assert [streamed.step().loss for _ in range(6)] == [in_memory.step().loss for _ in range(6)]
    assert streamed.evaluate().loss == pytest.approx(in_memory.evaluate().loss)


# -- errors ------------------------------------------------------------------------------------------------------
def expect(error: type, *phrases: str):
    """pytest.raises(error) whose message holds every phrase, anywhere and in any order."""
    return pytest.raises(error, match="(?s)" + "".join(f"(?=.*{re.escape(p)})" for p in phrases))


def test_missing_torchvision_files_name_the_expected_layout(tmp_path):
    nowhere = tmp_path / "nowhere"
    with expect(DataError, "mnist is not in", "(no such folder)", "downloading is switched off",
                f"{nowhere / 'MNIST' / 'raw'}/", "train-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
                "--dataset digits", "contains MNIST/"):
        load_data(config("mnist", nowhere), CPU)
    with expect(DataError, "cifar10 is not in", "cifar-10-batches-py/", "data_batch_1", "data_batch_5",
                "test_batch and batches.meta", "cifar-10-python.tar.gz"):
        load_data(config("cifar10", tmp_path), CPU)
    with expect(DataError, "FashionMNIST/raw/", "fashion-mnist"):
        load_data(config("fashion-mnist", tmp_path), CPU)


def test_missing_files_are_listed_and_gz_files_noticed(tmp_path):
    write_mnist(tmp_path, t10k=False)
    with expect(DataError, "Missing now: t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte."):
        load_data(config("mnist", tmp_path), CPU)
    raw = tmp_path / "MNIST" / "raw"
    (raw / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"x"))
    with expect(DataError, "gunzipping"):
        load_data(config("mnist", tmp_path), CPU)


def test_a_file_as_data_dir(tmp_path):
    (tmp_path / "file").write_text("x")
    with expect(DataError, "is a file, not a folder", "--data-dir"):
        load_data(config("cifar10", tmp_path / "file"), CPU)


def test_damaged_idx_files(tmp_path):
    write_mnist(tmp_path)
    images = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    whole = images.read_bytes()
    images.write_bytes(whole[:-100])
    with expect(DataError, "truncated or damaged", "50 x 28 x 28", str(images)):
        load_data(config("mnist", tmp_path), CPU)
    images.write_bytes(whole[:10])
    with expect(DataError, "truncated or damaged"):
        load_data(config("mnist", tmp_path), CPU)
    images.write_bytes(gzip.compress(whole))  # still compressed
    with expect(DataError, "not an idx file", "2051"):
        load_data(config("mnist", tmp_path), CPU)
    images.write_bytes(whole)
    write_idx(tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte", np.zeros(49, np.uint8))
    with expect(DataError, "50 images", "49 labels"):
        load_data(config("mnist", tmp_path), CPU)
    write_idx(tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte", np.full(50, 12, np.uint8))
    with expect(DataError, "outside 0..9"):
        load_data(config("mnist", tmp_path), CPU)


def test_damaged_cifar_pickle(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"\x80\x02garbage")
    with expect(DataError, "cannot read cifar10", "damaged", "download fresh copies"):
        load_data(config("cifar10", tmp_path), CPU)


def test_image_folder_errors(tmp_path):
    def load(path, **kw):
        return load_data(config(f"imagefolder:{path}", tmp_path, image_size=4, **kw), CPU)

    with expect(DataError, "does not exist"):
        load(tmp_path / "missing")
    (tmp_path / "file.png").write_bytes(b"")
    with expect(DataError, "is a file, not a folder"):
        load(tmp_path / "file.png")
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (4, 4)).save(flat / "1.png")
    (flat / ".git").mkdir()
    with expect(DataError, "has no subfolders", "holds 1 images loose", "a subfolder of its own"):
        load(flat)
    for name in ("cat", "dog"):
        (flat / name).mkdir()
    (flat / "dog" / "readme.txt").write_text("no images here")
    with expect(DataError, "has no images", ".png", "cat, dog"):
        load(flat)
    Image.new("RGB", (4, 4)).save(flat / "cat" / "1.png")
    with expect(DataError, "the class subfolders dog hold no images"):
        load(flat)
    (flat / "dog").rename(flat / ".dog")
    with expect(DataError, "only one class (cat)"):
        load(flat)
    (flat / "cow").mkdir()
    (flat / "cow" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with expect(DataError, "cannot read image", "broken.png"):
        load(flat)


def test_batch_larger_than_the_training_set(tmp_path):
    write_mnist(tmp_path)
    with expect(ConfigError, "batch_size 41 is larger than the training set (40 samples)", "--batch-size 40"):
        load_data(config("mnist", tmp_path, batch_size=41), CPU)


def test_bad_image_sets_from_a_caller():
    with expect(DataError, "N x C x H x W"):
        TensorSource(ImageSet("mine", torch.zeros(4, 8, 8), torch.zeros(4), ("a", "b"), 1.0), CPU, 0.5, 1, 0)
    with expect(DataError, "labels from 0 to 5", "0..1"):
        bad_labels = ImageSet("mine", torch.zeros(4, 1, 2, 2), torch.tensor([0, 1, 5, 1]), ("a", "b"), 1.0)
        TensorSource(bad_labels, CPU, 0.5, 1, 0)
    with expect(DataError, "two or more"):
        TensorSource(ImageSet("mine", torch.zeros(1, 1, 2, 2), torch.tensor([0]), ("a", "b"), 1.0), CPU, 0.5, 1, 0)


# -- downloads (never over the network) --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "dataset, cls_name", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST"), ("cifar10", "CIFAR10")]
)
def test_a_failed_download_gives_the_layout_paragraph(tmp_path, monkeypatch, dataset, cls_name):
    import torchvision.datasets

    def fail(self):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(getattr(torchvision.datasets, cls_name), "download", fail)
    with expect(DataError, f"{dataset} is not in", "could not be downloaded", "URLError", "name resolution",
                "put torchvision's files there yourself"):
        load_data(config(dataset, tmp_path, download=True), CPU)


def test_a_download_is_used_and_skipped_when_the_files_are_there(tmp_path, monkeypatch):
    import torchvision.datasets

    calls = []

    def fake_download(self):
        calls.append(self.root)
        write_cifar(Path(self.root))

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", fake_download)
    source = load_data(config("cifar10", tmp_path, download=True), CPU)
    assert source.train_size + source.val_size == 40 and calls == [str(tmp_path)]
    load_data(config("cifar10", tmp_path, download=True), CPU)
    assert len(calls) == 1  # present files are not downloaded again

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", lambda self: None)  # "succeeds" with nothing
    with expect(DataError, "mnist is not in", "could not be downloaded", "MNIST/raw/"):
        load_data(config("mnist", tmp_path, download=True), CPU)


def test_every_file_the_package_loads_is_committed():
    """The package's own files (the bundled digits, the app's CSS) are tracked by git, so a fresh clone has them.

    A `.gitignore` rule once hid `nktui/data/`: every test passed in the working tree and failed on a clean clone.
    """
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    package_files = [p.relative_to(root).as_posix() for p in (root / "nktui").rglob("*") if p.is_file()]
    package_files = [f for f in package_files if "__pycache__" not in f]
    tracked = subprocess.run(
        ["git", "ls-files", "nktui"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.split()
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *package_files], cwd=root, capture_output=True, text=True
    ).stdout.split()
    assert ignored == [], f"git ignores files of the package: {ignored}"
    assert "nktui/data/digits.csv.gz" in tracked and "nktui/ui/app.tcss" in tracked
