"""Data for training: a seeded train/validation split and batches that are a pure function of the step number.

`load_data(config, device)` returns a `DataSource`. Batch `s` (0-based global step) is taken from epoch
`s // steps_per_epoch` at position `s % steps_per_epoch` of that epoch's permutation, which comes from the seed and
the epoch number alone. So a run can be stopped, resumed or rewound to any step and see exactly the same batches,
with no data-loader state to save.

Data sets that fit (all built-in ones) are held as uint8 tensors on the training device and batches are
gathered there: no DataLoader, no host-to-device copy per step. Big image folders stream through a DataLoader.
Where the pixels come from is `nktui.engine.datasets`' business; this module owns the split, the batch order
and getting batches onto the device.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ..protocol.config import RunConfig
from ..protocol.errors import ConfigError, DataError
from .datasets import ImageSet, StreamedImages, load_images

Batch = tuple[torch.Tensor, torch.Tensor]

# Above this many bytes of uint8 pixels, an image folder streams instead of living on the device.
IN_MEMORY_LIMIT_BYTES = 1 << 30
# Up to this many bytes as float32, pixels are converted once (MNIST: 188 MB) instead of once per batch.
FLOAT_CACHE_LIMIT_BYTES = 256 << 20
# DataLoader worker processes that decode a streamed image folder (0: decode on the training thread).
STREAM_WORKERS = 2


def _generator(seed: int) -> torch.Generator:
    """A CPU generator for any Python int (manual_seed rejects values outside 64 bits)."""
    return torch.Generator().manual_seed(seed % (1 << 63))


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic (train, validation) index split of range(n) from the seed."""
    perm = torch.randperm(n, generator=_generator(seed))
    n_val = min(n - 1, max(1, round(n * val_fraction))) if n > 1 else 0  # both sides keep at least one sample
    return perm[n_val:], perm[:n_val]


class BatchOrder:
    """Which samples form the batch of global step s: a fresh seeded permutation each epoch, last partial batch
    dropped. Pure: the same (n, batch_size, seed, s) always gives the same indices."""

    def __init__(self, n: int, batch_size: int, seed: int, device: torch.device | str = "cpu") -> None:
        if n < 1:
            raise DataError("the training set is empty: the data set needs at least two samples")
        if batch_size > n:
            raise ConfigError(
                f"batch_size {batch_size} is larger than the training set ({n} samples): use --batch-size {n} or less"
            )
        self.n, self.batch_size, self.seed, self.device = n, batch_size, seed, torch.device(device)
        self.steps_per_epoch = n // batch_size
        self._epoch = -1
        self._perm = torch.empty(0, dtype=torch.long)

    def permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            gen = _generator(self.seed * 1_000_003 + epoch + 1)
            # Drawn on the CPU (same numbers on every device), moved once per epoch.
            self._perm, self._epoch = torch.randperm(self.n, generator=gen).to(self.device), epoch
        return self._perm

    def indices(self, step: int) -> torch.Tensor:
        epoch, pos = divmod(step, self.steps_per_epoch)
        return self.permutation(epoch)[pos * self.batch_size : (pos + 1) * self.batch_size]


@dataclass
class DataSource:
    """A split data set that hands out training batches by step and validation batches in order."""

    name: str
    input_shape: tuple[int, int, int]  # (channels, height, width)
    classes: tuple[str, ...]
    train_size: int
    val_size: int
    order: BatchOrder

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def steps_per_epoch(self) -> int:
        return self.order.steps_per_epoch

    def train_batch(self, step: int) -> Batch:  # pragma: no cover - interface
        raise NotImplementedError

    def eval_batches(self, split: str = "val", batch_size: int = 1024) -> Iterator[Batch]:  # pragma: no cover
        """The whole split ("val" or "train"), in a fixed order, in batches of up to batch_size."""
        raise NotImplementedError

    def split_size(self, split: str) -> int:
        return {"val": self.val_size, "train": self.train_size}[split]


def _to_floats(pixels: torch.Tensor, scale: float) -> torch.Tensor:
    """float32 pixels in [0, 1]: uint8 (or any dtype) converted and scaled; never modifies `pixels`."""
    if pixels.dtype != torch.float32:
        return pixels.to(torch.float32).mul_(scale)
    return pixels if scale == 1 else pixels * scale


class TensorSource(DataSource):
    """All samples as uint8 tensors on the training device; batches are gathered there."""

    def __init__(self, images: ImageSet, device: torch.device, val_fraction: float, batch_size: int, seed: int):
        pixels, labels = images.pixels, images.labels
        if pixels.ndim != 4 or labels.ndim != 1 or len(pixels) != len(labels):
            raise DataError(
                f"{images.name}: pixels must be N x C x H x W and labels N long, not {tuple(pixels.shape)} and "
                f"{tuple(labels.shape)}"
            )
        if len(labels) < 2:
            raise DataError(f"{images.name} has {len(labels)} samples: it needs two or more (one to validate on)")
        labels = labels.to(torch.int64)
        low, high = labels.min().item(), labels.max().item()
        if low < 0 or high >= len(images.classes):
            raise DataError(
                f"{images.name} has labels from {low} to {high}, but {len(images.classes)} classes: "
                f"labels must lie in 0..{len(images.classes) - 1}"
            )
        train_idx, val_idx = split_indices(len(labels), val_fraction, seed)
        x = pixels.to(device)
        y = labels.to(device)
        self.scale = images.scale
        if x.numel() * 4 <= FLOAT_CACHE_LIMIT_BYTES:  # small enough: convert once, so a batch is a bare gather
            x, self.scale = _to_floats(x, self.scale), 1.0
        self.train_x, self.train_y = x[train_idx.to(device)], y[train_idx.to(device)]
        self.val_x, self.val_y = x[val_idx.to(device)], y[val_idx.to(device)]
        self.device = device
        super().__init__(
            name=images.name,
            input_shape=tuple(pixels.shape[1:]),
            classes=images.classes,
            train_size=len(train_idx),
            val_size=len(val_idx),
            order=BatchOrder(len(train_idx), batch_size, seed, device),
        )

    def train_batch(self, step: int) -> Batch:
        idx = self.order.indices(step)
        return _to_floats(self.train_x[idx], self.scale), self.train_y[idx]

    def eval_batches(self, split: str = "val", batch_size: int = 1024) -> Iterator[Batch]:
        x, y = (self.val_x, self.val_y) if split == "val" else (self.train_x, self.train_y)
        for start in range(0, len(y), batch_size):
            yield _to_floats(x[start : start + batch_size], self.scale), y[start : start + batch_size]


class StreamSource(DataSource):
    """Samples decoded on the fly by DataLoader workers, for image folders too big to hold in memory. The dataset
    yields uint8 images; they travel to the device as uint8 and are scaled there, exactly as TensorSource does, so
    both give the same batch for the same step."""

    def __init__(
        self,
        dataset: torch.utils.data.Dataset,
        classes: tuple[str, ...],
        input_shape: tuple[int, int, int],
        device: torch.device,
        val_fraction: float,
        batch_size: int,
        seed: int,
        workers: int = STREAM_WORKERS,
        *,
        name: str = "imagefolder",
        scale: float = 1 / 255,
    ):
        self.dataset, self.device, self.workers, self.scale = dataset, device, workers, scale
        self.train_idx, self.val_idx = split_indices(len(dataset), val_fraction, seed)
        self._iter: Iterator[Batch] | None = None
        self._next_step = -1
        super().__init__(
            name=name,
            input_shape=input_shape,
            classes=classes,
            train_size=len(self.train_idx),
            val_size=len(self.val_idx),
            order=BatchOrder(len(self.train_idx), batch_size, seed),
        )

    def _loader(self, batches) -> Iterator[Batch]:
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=batches, num_workers=self.workers, pin_memory=self.device.type == "cuda"
        )
        for x, y in loader:
            x = x.to(self.device, non_blocking=True)
            yield _to_floats(x, self.scale), y.to(self.device, non_blocking=True)

    def train_batch(self, step: int) -> Batch:
        if self._iter is None or step != self._next_step:  # first call, or a jump (resume, rewind)
            if self._iter is not None:
                self._iter.close()  # ends the old loader's workers now, not at garbage collection
            self._iter = self._loader(_StepBatches(self, step))
        self._next_step = step + 1
        return next(self._iter)

    def eval_batches(self, split: str = "val", batch_size: int = 1024) -> Iterator[Batch]:
        idx = self.val_idx if split == "val" else self.train_idx
        return self._loader([idx[i : i + batch_size].tolist() for i in range(0, len(idx), batch_size)])


class _StepBatches:
    """An endless batch sampler over dataset indices, starting at a global step."""

    def __init__(self, source: StreamSource, start_step: int) -> None:
        self.source, self.start_step = source, start_step

    def __iter__(self):
        step = self.start_step
        while True:
            yield self.source.train_idx[self.source.order.indices(step)].tolist()
            step += 1


def load_data(config: RunConfig, device: torch.device, *, workers: int | None = None) -> DataSource:
    """The configured data set, split and ready to hand out batches on `device`. `workers`: DataLoader processes
    for a streamed image folder (default STREAM_WORKERS)."""
    loaded = load_images(config, in_memory_limit=IN_MEMORY_LIMIT_BYTES)
    if isinstance(loaded, StreamedImages):
        return StreamSource(
            loaded.dataset,
            loaded.classes,
            loaded.input_shape,
            device,
            config.val_fraction,
            config.batch_size,
            config.seed,
            STREAM_WORKERS if workers is None else workers,
            name=loaded.name,
            scale=loaded.scale,
        )
    return TensorSource(loaded, device, config.val_fraction, config.batch_size, config.seed)
