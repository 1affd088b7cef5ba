"""Data for training: a seeded train/validation split and batches that are a pure function of the step number.

`load_data(config, device)` returns a `DataSource`. Batch `s` (0-based global step) is taken from epoch
`s // steps_per_epoch` at position `s % steps_per_epoch` of that epoch's permutation, which comes from the seed and
the epoch number alone. So a run can be stopped, resumed or rewound to any step and see exactly the same batches,
with no data-loader state to save.

Data sets that fit (all built-in ones) are held as uint8 tensors on the training device and batches are
gathered there: no DataLoader, no host-to-device copy per step. Big image folders stream through a DataLoader.
Where the pixels come from is `nktui.training.sources`' business.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .config import RunConfig
from .errors import ConfigError
from .sources import ImageSet, load_images

Batch = tuple[torch.Tensor, torch.Tensor]

# Above this many bytes of uint8 pixels, an image folder streams instead of living on the device.
IN_MEMORY_LIMIT_BYTES = 1 << 30
# Up to this many bytes as float32, pixels are converted once (MNIST: 188 MB) instead of once per batch.
FLOAT_CACHE_LIMIT_BYTES = 256 << 20


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic (train, validation) index split of range(n) from the seed."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = max(1, round(n * val_fraction)) if n > 1 else 0
    return perm[n_val:], perm[:n_val]


class BatchOrder:
    """Which samples form the batch of global step s: a fresh seeded permutation each epoch, last partial batch
    dropped. Pure: the same (n, batch_size, seed, s) always gives the same indices."""

    def __init__(self, n: int, batch_size: int, seed: int, device: torch.device | str = "cpu") -> None:
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
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch + 1)
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


class TensorSource(DataSource):
    """All samples as uint8 tensors on the training device; batches are gathered there."""

    def __init__(self, images: ImageSet, device: torch.device, val_fraction: float, batch_size: int, seed: int):
        train_idx, val_idx = split_indices(len(images.labels), val_fraction, seed)
        x = images.pixels.to(device)
        y = images.labels.to(device)
        self.scale = images.scale
        if x.numel() * 4 <= FLOAT_CACHE_LIMIT_BYTES:  # small enough: convert once, so a batch is a bare gather
            x, self.scale = self._floats(x), 1.0
        self.train_x, self.train_y = x[train_idx.to(device)], y[train_idx.to(device)]
        self.val_x, self.val_y = x[val_idx.to(device)], y[val_idx.to(device)]
        self.device = device
        super().__init__(
            name=images.name,
            input_shape=tuple(images.pixels.shape[1:]),
            classes=images.classes,
            train_size=len(train_idx),
            val_size=len(val_idx),
            order=BatchOrder(len(train_idx), batch_size, seed, device),
        )

    def _floats(self, pixels: torch.Tensor) -> torch.Tensor:
        if pixels.dtype == torch.float32:
            return pixels
        return pixels.to(torch.float32).mul_(self.scale)

    def train_batch(self, step: int) -> Batch:
        idx = self.order.indices(step)
        return self._floats(self.train_x[idx]), self.train_y[idx]

    def eval_batches(self, split: str = "val", batch_size: int = 1024) -> Iterator[Batch]:
        x, y = (self.val_x, self.val_y) if split == "val" else (self.train_x, self.train_y)
        for start in range(0, len(y), batch_size):
            yield self._floats(x[start : start + batch_size]), y[start : start + batch_size]


class StreamSource(DataSource):
    """Samples decoded on the fly by DataLoader workers, for image folders too big to hold in memory."""

    def __init__(self, dataset, classes, input_shape, device, val_fraction, batch_size, seed, workers=2):
        self.dataset, self.device, self.workers = dataset, device, workers
        self.train_idx, self.val_idx = split_indices(len(dataset), val_fraction, seed)
        self._iter: Iterator[Batch] | None = None
        self._next_step = -1
        super().__init__(
            name="imagefolder",
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
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def train_batch(self, step: int) -> Batch:
        if self._iter is None or step != self._next_step:  # first call, or a jump (resume, rewind)
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




def load_data(config: RunConfig, device: torch.device) -> DataSource:
    """The configured data set, split and ready to hand out batches on `device`."""
    loaded = load_images(config, in_memory_limit=IN_MEMORY_LIMIT_BYTES)
    if isinstance(loaded, ImageSet):
        return TensorSource(loaded, device, config.val_fraction, config.batch_size, config.seed)
    return StreamSource(
        loaded.dataset, loaded.classes, loaded.input_shape, device, config.val_fraction, config.batch_size, config.seed
    )
