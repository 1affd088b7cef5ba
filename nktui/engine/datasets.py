"""Where pixels come from: the bundled digits, torchvision's MNIST, Fashion-MNIST and CIFAR-10, and image folders.

Each loader returns an `ImageSet` (uint8 pixels, N x C x H x W, with labels and class names) or, for an image
folder too big to hold, a `StreamedImages` wrapping a torchvision dataset. A data set that is missing or cannot
be read raises `DataError` with a paragraph that names the files and folder layout that were expected (a file or
folder nktui may not read included). Image folders are walked by `find_images`, which never goes round a symlink
loop. This module
owns finding, checking and decoding the files; splitting and batching them is `nktui.engine.batches`'s business.
CIFAR-10's files are pickles: torchvision only downloads them, `nktui.engine.cifar` reads them without running
code from them.
"""

from __future__ import annotations

import functools
import gzip
import os
import struct
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from ..protocol.config import RunConfig
from ..protocol.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's


@dataclass(frozen=True)
class ImageSet:
    name: str
    pixels: torch.Tensor  # uint8, (N, C, H, W)
    labels: torch.Tensor  # int64, (N,)
    classes: tuple[str, ...]
    scale: float  # pixel value * scale lies in [0, 1]


@dataclass(frozen=True)
class StreamedImages:
    name: str
    dataset: torch.utils.data.Dataset  # yields (uint8 tensor C x H x W, label)
    classes: tuple[str, ...]
    input_shape: tuple[int, int, int]
    scale: float = 1 / 255


def load_images(config: RunConfig, in_memory_limit: int) -> ImageSet | StreamedImages:
    name = config.dataset
    try:
        if name == "digits":
            return load_digits()
        if name.startswith("imagefolder:"):
            return load_image_folder(name.partition(":")[2], config.image_size, in_memory_limit)
        return load_torchvision(name, Path(config.data_dir).expanduser(), download=config.download)
    except PermissionError as exc:  # (the checks up front cannot see everything: a file deep in a folder)
        raise DataError(_not_allowed(exc.filename or name)) from None


def _not_allowed(path: object) -> str:
    return (f"nktui may not read {path} (permission denied): make it readable (chmod -R u+rX) or run as a user "
            "who may read it")


def _require_readable(path: Path) -> None:
    """DataError when this process may not read `path` (for a folder: list it and open what is in it)."""
    if path.exists() and not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
        raise DataError(_not_allowed(path))


# -- digits (bundled) -------------------------------------------------------------------------------------------
def load_digits() -> ImageSet:
    """UCI optical handwritten digits (test set): 1,797 8x8 images, pixel values 0..16, CC BY 4.0."""
    raw = resources.files("nktui.data").joinpath("digits.csv.gz").read_bytes()
    rows = [line.split(",") for line in gzip.decompress(raw).decode("ascii").split()]
    values = torch.tensor([[int(v) for v in row] for row in rows], dtype=torch.uint8)
    pixels = values[:, :64].reshape(-1, 1, 8, 8).contiguous()
    labels = values[:, 64].to(torch.int64)
    return ImageSet("digits", pixels, labels, tuple(str(d) for d in range(10)), scale=1 / 16)


# -- torchvision: MNIST, Fashion-MNIST, CIFAR-10 ----------------------------------------------------------------
_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
# name -> (folder under --data-dir, the files torchvision insists on, where they come from)
LAYOUTS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "mnist": ("MNIST/raw", _IDX_FILES, "gunzipped from the MNIST site's .gz files"),
    "fashion-mnist": ("FashionMNIST/raw", _IDX_FILES, "gunzipped from Zalando's fashion-mnist .gz files"),
    "cifar10": (
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta"),
        "extracted from cifar-10-python.tar.gz",
    ),
}
# torchvision names MNIST's classes "0 - zero" ...: plain digits, as in the bundled set, fit a confusion matrix
_CLASS_NAMES = {"mnist": tuple(str(d) for d in range(10))}


def _torchvision_class(name: str):
    from torchvision import datasets

    if name == "mnist":
        return datasets.MNIST  # (not subclassed: torchvision names the folder after the class)
    if name == "fashion-mnist":
        return datasets.FashionMNIST
    return _cifar10_download()


@functools.cache
def _cifar10_download():
    from torchvision import datasets

    class CIFAR10Download(datasets.CIFAR10):
        """torchvision's CIFAR10, for its download only (the archive's md5 is checked). Its reader unpickles the
        files as they are, which runs any code a crafted file names: nktui reads them itself (nktui.engine.cifar)."""

        def __init__(self, root: str, train: bool = True, download: bool = False) -> None:
            self.root = root
            if download:
                self.download()

    return CIFAR10Download


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or "no details"
    return f"{type(exc).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


def missing_data_message(name: str, data_dir: Path, reason: str) -> str:
    """The paragraph for a torchvision data set that is not there: what to download or where to put which files."""
    folder, files, origin = LAYOUTS[name]
    where = data_dir / folder
    missing = [f for f in files if not (where / f).is_file()]
    listed = ", ".join(files[:-1]) + f" and {files[-1]}"
    text = f"{name} is not in {data_dir}" + ("" if data_dir.is_dir() else " (no such folder)")
    text += (
        f" and {reason}. Either run once with network access (it downloads into --data-dir), or put torchvision's "
        f"files there yourself: {where}/ holding {listed} ({origin})."
    )
    if missing and len(missing) < len(files):
        text += f" Missing now: {', '.join(missing)}."
    if any((where / f"{f}.gz").is_file() for f in missing):
        text += " The .gz files there need gunzipping first (a run with downloading on does that)."
    return text + (
        f" Point --data-dir at the folder that contains {folder.split('/')[0]}/."
        " Or use --dataset digits, which is bundled and needs no download."
    )


def load_torchvision(name: str, data_dir: Path, *, download: bool) -> ImageSet:
    """MNIST, Fashion-MNIST or CIFAR-10's training set from torchvision's files under data_dir (downloaded when
    absent and `download` is on). Their test sets are not used: validation is a split of the training set."""
    cls = _torchvision_class(name)
    if data_dir.exists() and not data_dir.is_dir():
        raise DataError(f"--data-dir {data_dir} is a file, not a folder: give the folder that holds the data sets")
    folder, files, _ = LAYOUTS[name]
    where = data_dir / folder
    for path in (data_dir, where, *(where / f for f in files)):
        _require_readable(path)
    if not all((where / f).is_file() for f in files):
        if not download:
            raise DataError(missing_data_message(name, data_dir, "downloading is switched off"))
        try:
            cls(root=str(data_dir), train=True, download=True)
        except Exception as exc:  # network errors come in many types (URLError, OSError, RuntimeError...)
            reason = f"could not be downloaded ({_one_line(exc)})"
            raise DataError(missing_data_message(name, data_dir, reason)) from None
        if not all((where / f).is_file() for f in files):
            raise DataError(missing_data_message(name, data_dir, "the download did not produce all its files"))
    if folder.endswith("/raw"):
        _check_idx_pair(where / "train-images-idx3-ubyte", where / "train-labels-idx1-ubyte")
    if name == "cifar10":  # pickles: read by nktui's restricted unpickler, never by pickle.load
        from .cifar import load_cifar10

        pixels, labels, classes = load_cifar10(data_dir)
        return _checked(name, where, torch.from_numpy(pixels), torch.from_numpy(labels), classes)
    try:
        dataset = cls(root=str(data_dir), train=True, download=False)
    except Exception as exc:  # the files are there but broken: wrong sizes
        raise DataError(
            f"cannot read {name} from {where}: {_one_line(exc)}. The files there are damaged or not torchvision's: "
            "delete them and run again with network access to download fresh copies."
        ) from None

    pixels = torch.as_tensor(dataset.data).unsqueeze(1)  # MNIST-like: N, H, W
    labels = torch.as_tensor(dataset.targets, dtype=torch.int64)
    return _checked(name, where, pixels, labels, _CLASS_NAMES.get(name, tuple(dataset.classes)))


def _checked(name: str, where: Path, pixels: torch.Tensor, labels: torch.Tensor, classes: tuple[str, ...]) -> ImageSet:
    if len(labels) != len(pixels) or len(labels) == 0:
        raise DataError(f"{name} in {where} holds {len(pixels)} images but {len(labels)} labels: the files are damaged")
    if labels.min() < 0 or labels.max() >= len(classes):
        raise DataError(
            f"{name} in {where} has labels from {labels.min()} to {labels.max()}, outside 0..{len(classes) - 1}: "
            "the files are damaged"
        )
    return ImageSet(name, pixels.contiguous(), labels, classes, scale=1 / 255)


def _idx_dims(path: Path, ndim: int) -> tuple[int, ...]:
    """The dimensions in an idx file's header (big-endian magic 0x0000 08 ndim, then ndim uint32 sizes), after
    checking that the file holds exactly that many bytes: torchvision would fail on it with a bare assertion."""
    size = path.stat().st_size
    with path.open("rb") as f:
        header = f.read(4 + 4 * ndim)
    if header[:4] != bytes((0, 0, 8, ndim)):
        raise DataError(
            f"{path} is not an idx file of {ndim}-D unsigned bytes (it does not start with the magic number "
            f"{0x800 + ndim}): use the file gunzipped from the original download, or delete it and run again with "
            "network access to download a fresh copy"
        )
    dims = struct.unpack(f">{ndim}I", header[4:]) if len(header) == 4 + 4 * ndim else ()
    expected = 4 + 4 * ndim + (int(torch.tensor(dims).prod()) if dims else 0)
    if not dims or size != expected:
        promised = f"{' x '.join(map(str, dims))} bytes of data ({expected:,} bytes in all)" if dims else "a header"
        raise DataError(
            f"{path} is truncated or damaged: its header promises {promised} but the file holds {size:,} bytes. "
            "Delete it and run again with network access to download a fresh copy"
        )
    return dims


def _check_idx_pair(images: Path, labels: Path) -> None:
    n_images = _idx_dims(images, 3)[0]
    n_labels = _idx_dims(labels, 1)[0]
    if n_images == 0:
        raise DataError(
            f"{images} has no images (its header says 0): use the file gunzipped from the original download, or "
            "delete it and run again with network access to download a fresh copy"
        )
    if n_images != n_labels:
        raise DataError(f"{images} holds {n_images:,} images but {labels} holds {n_labels:,} labels: they must match")


# -- image folders ----------------------------------------------------------------------------------------------
def load_rgb(path: str):
    """An image file as an 8-bit RGB PIL image. Grayscale, palette and alpha images become plain RGB (alpha is
    dropped); 16-bit grayscale is scaled to 8 bits, where PIL's own conversion would clip it to white."""
    from PIL import Image

    try:
        with open(path, "rb") as f:
            image = Image.open(f)
            image.load()
    except Exception as exc:  # OSError, PIL.UnidentifiedImageError, a decompression bomb...
        raise DataError(f"cannot read image {path}: {_one_line(exc)}") from None
    if image.mode.startswith("I;16") or (image.mode == "I" and image.getextrema()[1] > 255):
        image = image.point(lambda v: v * (1 / 257)).convert("L")  # (point works on mode I; I;16 becomes I)
    return image.convert("RGB")


@functools.cache
def _visible_image_folder():
    from torchvision import datasets

    class VisibleImageFolder(datasets.ImageFolder):
        """ImageFolder that ignores hidden subfolders (.ipynb_checkpoints, .git): they are not classes."""

        def find_classes(self, directory):
            classes = sorted(e.name for e in Path(directory).iterdir() if e.is_dir() and not e.name.startswith("."))
            return classes, {c: i for i, c in enumerate(classes)}

        @staticmethod
        def make_dataset(directory, class_to_idx, extensions=None, is_valid_file=None, allow_empty=False):
            return find_images(Path(directory), class_to_idx)

    return VisibleImageFolder


def find_images(root: Path, class_to_idx: dict[str, int]) -> list[tuple[str, int]]:
    """(path, class) of every image under each class subfolder, in torchvision's order. Symlinked folders are
    followed, but never into a folder already seen, the image folder itself or another class's folder: a link back
    up the tree (a loop) is skipped, where torchvision's walk would go round it until the paths grow too long.
    Broken links are skipped; a folder that may not be read is a DataError."""
    samples: list[tuple[str, int]] = []
    tops = {_inode(os.path.join(root, name)) for name in class_to_idx} | {_inode(root)}
    for name in sorted(class_to_idx):
        seen = set(tops)
        found: list[tuple[str, list[str]]] = []
        stack = [(os.path.join(root, name), True)]
        while stack:
            folder, top = stack.pop()
            try:
                inode = _inode(folder)
                if inode in seen and not top:
                    continue  # a loop, or a second way to a folder already read
                seen.add(inode)
                if not os.access(folder, os.R_OK | os.X_OK):
                    raise DataError(_not_allowed(folder))
                entries = sorted(os.scandir(folder), key=lambda e: e.name, reverse=True)  # (popped in name order)
            except PermissionError:
                raise DataError(_not_allowed(folder)) from None
            except OSError:  # gone meanwhile, a looping link: as torchvision, skip it
                continue
            files = []
            for entry in entries:
                if entry.is_dir():  # (follows links; False for a broken or looping one)
                    stack.append((entry.path, False))
                elif entry.name.lower().endswith(IMAGE_SUFFIXES) and entry.is_file():
                    files.append(entry.name)
            found.append((folder, files))
        for folder, files in sorted(found):
            samples += [(os.path.join(folder, f), class_to_idx[name]) for f in sorted(files)]
    return samples


def _inode(path: str | Path) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_dev, info.st_ino


def load_image_folder(path: str, size: int, in_memory_limit: int) -> ImageSet | StreamedImages:
    """torchvision ImageFolder (one subfolder per class), every image resized to size x size RGB."""
    from torchvision import transforms

    root = Path(path).expanduser()
    _require_readable(root)
    if not root.exists():
        raise DataError(f"image folder {root} does not exist: give a folder with one subfolder of images per class")
    if not root.is_dir():
        raise DataError(f"{root} is a file, not a folder: imagefolder:PATH needs a folder with one subfolder per class")
    subfolders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if not subfolders:
        loose = sum(1 for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        raise DataError(
            f"image folder {root} has no subfolders{f' (it holds {loose} images loose)' if loose else ''}: put each "
            f"class's images in a subfolder of its own, such as {root}/cat/1.png and {root}/dog/1.png"
        )
    transform = transforms.Compose([transforms.Resize((size, size)), transforms.PILToTensor()])
    dataset = _visible_image_folder()(str(root), transform=transform, loader=load_rgb, allow_empty=True)
    classes = tuple(dataset.classes)
    counts = torch.bincount(torch.tensor(dataset.targets, dtype=torch.int64), minlength=len(classes))
    empty = [c for c, k in zip(classes, counts.tolist()) if k == 0]
    if len(empty) == len(classes):
        raise DataError(
            f"image folder {root} has no images ({', '.join(IMAGE_SUFFIXES)}) in its class subfolders "
            f"({', '.join(classes)})"
        )
    if empty:
        raise DataError(
            f"in image folder {root}, the class subfolders {', '.join(empty)} hold no images "
            f"({', '.join(IMAGE_SUFFIXES)}): add images to them or remove them"
        )
    if len(classes) < 2:
        raise DataError(f"image folder {root} has only one class ({classes[0]}): a classifier needs two or more")
    name, n = f"imagefolder:{root.name}", len(dataset)
    if n * 3 * size * size > in_memory_limit:
        return StreamedImages(name, dataset, classes, (3, size, size), scale=1 / 255)
    pixels = torch.empty((n, 3, size, size), dtype=torch.uint8)
    for i in range(n):
        pixels[i] = dataset[i][0]
    labels = torch.tensor(dataset.targets, dtype=torch.int64)
    return ImageSet(name, pixels, labels, classes, scale=1 / 255)
