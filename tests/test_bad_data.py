"""Data and files that would hang a run or end it in a traceback: an image folder with a symlink loop (skipped,
quickly), folders and files nktui may not read (one line: as root every file is readable, so the refusals are
simulated), and more threads than cores (capped, with one warning line)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from nktui import cli
from nktui.protocol.config import usable_cores
from nktui.training import DataError, RunConfig, Trainer
from nktui.engine import datasets as sources

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def folder(tmp_path):
    """An image folder of two classes, three 4x4 images each."""
    root = tmp_path / "images"
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (4, 4), (40 * i, 0, 0)).save(root / c / f"{i}.png")
    return root


def test_a_symlink_loop_in_an_image_folder_is_skipped_quickly(folder):
    (folder / "cat" / "up").symlink_to(folder)  # cat/up/cat/up/... for ever, for torchvision's walk
    (folder / "cat" / "self").symlink_to(folder / "cat")
    (folder / "dog" / "deep").mkdir()
    (folder / "dog" / "deep" / "round").symlink_to(folder / "dog" / "deep")
    (folder / "dog" / "deep" / "9.png").symlink_to(folder / "cat" / "0.png")  # a linked image counts
    (folder / "dog" / "broken.png").symlink_to(folder / "nowhere.png")
    started = time.monotonic()
    trainer = Trainer(RunConfig(device="cpu", dataset=f"imagefolder:{folder}", image_size=4, batch_size=2))
    assert time.monotonic() - started < 20
    assert trainer.data.train_size + trainer.data.val_size == 7


def test_the_walk_keeps_torchvisions_order(folder):
    from torchvision.datasets.folder import make_dataset

    (folder / "dog" / "b").mkdir()
    (folder / "dog" / "a").mkdir()
    for sub, name in (("b", "x.png"), ("a", "y.PNG"), ("a", "notes.txt")):
        (folder / "dog" / sub / name).write_bytes(b"")
    index = {"cat": 0, "dog": 1}
    assert sources.find_images(folder, index) == make_dataset(str(folder), index, sources.IMAGE_SUFFIXES)


def test_an_image_folder_nktui_may_not_read_is_one_line(folder, monkeypatch, capsys):
    real = os.access
    monkeypatch.setattr(sources.os, "access", lambda p, mode: False if Path(p) == folder / "dog" else real(p, mode))
    code = cli.main(["train", "--dataset", f"imagefolder:{folder}", "--device", "cpu", "--steps", "2"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert f"nktui may not read {folder / 'dog'} (permission denied)" in err
    monkeypatch.setattr(sources.os, "access", lambda p, mode: False if Path(p) == folder else real(p, mode))
    with pytest.raises(DataError, match=f"nktui may not read {folder} "):
        sources.load_image_folder(str(folder), 4, 1 << 30)


def test_a_permission_error_deep_inside_is_one_line_too(folder, monkeypatch):
    """What `os.access` cannot see (a file made unreadable meanwhile) still becomes a DataError."""

    def refuse(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(sources, "load_rgb", refuse)
    with pytest.raises(DataError, match="nktui may not read .*0.png \\(permission denied\\)"):
        Trainer(RunConfig(device="cpu", dataset=f"imagefolder:{folder}", image_size=4, batch_size=2))


def test_mnist_files_nktui_may_not_read_are_one_line(tmp_path, monkeypatch):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in sources.LAYOUTS["mnist"][1]:
        (raw / name).write_bytes(b"\0")
    real = os.access
    locked = raw / "train-images-idx3-ubyte"
    monkeypatch.setattr(sources.os, "access", lambda p, mode: False if Path(p) == locked else real(p, mode))
    with pytest.raises(DataError, match=f"nktui may not read {locked} "):
        sources.load_torchvision("mnist", tmp_path, download=False)


def test_more_threads_than_cores_are_capped_with_one_warning(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "nktui", "train", "--threads", "10000", "--steps", "3", "--device", "cpu",
         "--run-dir", str(tmp_path / "run")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    cores = usable_cores()
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [f"nktui: warning: --threads 10000 is more than this machine's {cores} cores: "
                                        f"using {cores}"]
    assert f"threads = {cores}\n" in (tmp_path / "run" / "config.toml").read_text()
