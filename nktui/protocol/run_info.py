"""RunInfo: what a front end knows of a built run without touching its trainer, as one frozen value.

The training thread makes it when the run is built (`nktui.engine.published.describe`) and publishes a new one
when what it says changes (the step limit raised, the rewind buffer grown or cut): readers take
`Controller.info` (None until the trainer exists), a plain attribute replaced whole, never mutated. The live step
counter (`Controller.step_count`) and the GPU reading (`Controller.gpu`) are published beside it, since they change
more often than a record is worth. No torch, no Textual.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataSummary:
    name: str
    input_shape: tuple[int, ...]  # (channels, height, width)
    classes: tuple[str, ...]
    train_size: int
    val_size: int
    steps_per_epoch: int


@dataclass(frozen=True)
class RewindReach:
    """The rewind buffer: the oldest step it can go back to (None: nothing kept), states kept, their bytes."""

    oldest_step: int | None = None
    states: int = 0
    memory_bytes: int = 0


@dataclass(frozen=True)
class RunInfo:
    layers: tuple[str, ...]  # the trainable parameters' names, in order (the gradient pane's rows, the CSV columns)
    shapes: tuple[tuple[int, ...], ...]  # each one's shape
    parameters: tuple[str, ...]  # every parameter, trainable or not (the loss surface's weights)
    parameter_shapes: tuple[tuple[int, ...], ...]
    step_limit: int  # the step the run finishes at
    device: str  # `cpu`, `cuda:0`, `mps`
    device_type: str  # `cpu`, `cuda`, `mps`
    device_description: str  # `cuda:0 (NVIDIA H100 80GB HBM3)`
    data: DataSummary
    rewinds: RewindReach = RewindReach()

    @property
    def layer_shapes(self) -> dict[str, tuple[int, ...]]:
        return dict(zip(self.layers, self.shapes))

    @property
    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        return dict(zip(self.parameters, self.parameter_shapes))

    @property
    def classes(self) -> tuple[str, ...]:
        return self.data.classes
