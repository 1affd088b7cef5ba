"""Where pixels come from: the bundled digits, torchvision's MNIST, Fashion-MNIST and CIFAR-10, and image folders.

Each loader returns an `ImageSet` (uint8 pixels, N x C x H x W, with labels and class names) or, for an image
folder too big to hold, a `StreamedImages` wrapping a torchvision dataset. A data set that is missing or cannot
be read raises `DataError` with a paragraph that names the files and folder layout that were expected.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from .config import RunConfig
from .errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class ImageSet:
    name: str
    pixels: torch.Tensor  # uint8, (N, C, H, W)
    labels: torch.Tensor  # int64, (N,)
    classes: tuple[str, ...]
    scale: float  # pixel value * scale lies in [0, 1]


@dataclass(frozen=True)
class StreamedImages:
    dataset: torch.utils.data.Dataset  # yields (float tensor C x H x W in [0, 1], label)
    classes: tuple[str, ...]
    input_shape: tuple[int, int, int]


def load_images(config: RunConfig, in_memory_limit: int) -> ImageSet | StreamedImages:
    name = config.dataset
    if name == "digits":
        return load_digits()
    if name.startswith("imagefolder:"):
        return load_image_folder(name.partition(":")[2], config.image_size, in_memory_limit)
    return load_torchvision(name, Path(config.data_dir), download=config.download)


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
_EXPECTED_FILES = {
    "mnist": (
        "MNIST/raw",
        "train-images-idx3-ubyte, train-labels-idx1-ubyte (gunzipped from the MNIST site's .gz files)",
    ),
    "fashion-mnist": (
        "FashionMNIST/raw",
        "train-images-idx3-ubyte, train-labels-idx1-ubyte (gunzipped from Zalando's fashion-mnist .gz files)",
    ),
    "cifar10": (
        "cifar-10-batches-py",
        "data_batch_1 ... data_batch_5, test_batch and batches.meta (extracted from cifar-10-python.tar.gz)",
    ),
}


def _torchvision_class(name: str):
    from torchvision import datasets

    if name == "mnist":
        return datasets.MNIST
    if name == "fashion-mnist":
        return datasets.FashionMNIST

    class CIFAR10LocalFiles(datasets.CIFAR10):
        """torchvision's CIFAR10 reader; local files are trusted as they are (the download checks its md5)."""

        train_list = [(f, None) for f, _ in datasets.CIFAR10.train_list]
        test_list = [(f, None) for f, _ in datasets.CIFAR10.test_list]
        meta = {**datasets.CIFAR10.meta, "md5": None}

    return CIFAR10LocalFiles


def missing_data_message(name: str, data_dir: Path, reason: str) -> str:
    folder, files = _EXPECTED_FILES[name]
    return (
        f"{name} is not in {data_dir} and {reason}. Either run once with network access (it downloads into "
        f"--data-dir), or put torchvision's files there yourself: {data_dir / folder}/ holding {files}. "
        f"Point --data-dir at the folder that contains {folder.split('/')[0]}/. "
        "Or use --dataset digits, which is bundled and needs no download."
    )


def load_torchvision(name: str, data_dir: Path, *, download: bool) -> ImageSet:
    cls = _torchvision_class(name)
    if data_dir.exists() and not data_dir.is_dir():
        raise DataError(f"--data-dir {data_dir} is a file, not a folder: give the folder that holds the data sets")
    try:
        dataset = cls(root=str(data_dir), train=True, download=False)
    except RuntimeError:
        if not download:
            raise DataError(missing_data_message(name, data_dir, "downloading is switched off")) from None
        try:
            dataset = cls(root=str(data_dir), train=True, download=True)
        except Exception as exc:  # network errors come in many types (URLError, OSError, RuntimeError...)
            reason = f"could not be downloaded ({type(exc).__name__}: {exc})"
            raise DataError(missing_data_message(name, data_dir, reason)) from None
    except Exception as exc:  # the files are there but broken: truncated, wrong magic number, bad pickle
        raise DataError(f"cannot read {name} from {data_dir}: {type(exc).__name__}: {exc}") from None

    data = torch.as_tensor(dataset.data)
    if data.ndim == 3:  # MNIST-like: N, H, W
        pixels = data.unsqueeze(1)
    else:  # CIFAR: N, H, W, C
        pixels = data.permute(0, 3, 1, 2)
    labels = torch.as_tensor(dataset.targets, dtype=torch.int64)
    return ImageSet(name, pixels.contiguous(), labels, tuple(dataset.classes), scale=1 / 255)


# -- image folders ----------------------------------------------------------------------------------------------
def load_image_folder(path: str, size: int, in_memory_limit: int) -> ImageSet | StreamedImages:
    """torchvision ImageFolder (one subfolder per class), every image resized to size x size RGB."""
    from torchvision import datasets, transforms

    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"image folder {root} does not exist: give a folder with one subfolder of images per class")
    if not root.is_dir():
        raise DataError(f"{root} is a file, not a folder: imagefolder:PATH needs a folder with one subfolder per class")
    subfolders = [p for p in root.iterdir() if p.is_dir()]
    if not subfolders:
        raise DataError(
            f"image folder {root} has no subfolders: put each class's images in a subfolder of its own, "
            f"such as {root}/cat/1.png and {root}/dog/1.png"
        )
    transform = transforms.Compose([transforms.Resize((size, size)), transforms.PILToTensor()])
    try:
        dataset = datasets.ImageFolder(str(root), transform=transform)
    except (FileNotFoundError, OSError) as exc:
        raise DataError(
            f"image folder {root} has no images ({', '.join(IMAGE_SUFFIXES)}) in its class subfolders: {exc}"
        ) from None
    if len(dataset.classes) < 2:
        raise DataError(f"image folder {root} has only one class ({dataset.classes[0]}): a classifier needs two or more")
    classes = tuple(dataset.classes)
    n = len(dataset)
    if n * 3 * size * size > in_memory_limit:
        streamed = datasets.ImageFolder(
            str(root), transform=transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor()])
        )
        return StreamedImages(streamed, classes, (3, size, size))
    pixels = torch.empty((n, 3, size, size), dtype=torch.uint8)
    for i in range(n):
        try:
            image, _ = dataset[i]
        except Exception as exc:
            raise DataError(f"cannot read image {dataset.samples[i][0]}: {exc}") from None
        pixels[i] = image  # ImageFolder's loader converts every image to RGB
    labels = torch.tensor(dataset.targets, dtype=torch.int64)
    return ImageSet(f"imagefolder:{root.name}", pixels, labels, classes, scale=1 / 255)
