"""The results the debugger's commands return: a traced step, an LR what-if, a loss surface, a layer snapshot and a
detailed evaluation, and what a surface is asked for with (`SurfaceRequest`, `WeightRef`).

They are built on the training thread (`nktui.engine.debugger`'s `step_trace`, `whatif`, `landscape`, `layer_snapshot`,
`nktui.engine.evaluation`) and read by any front end.
Every field holds plain Python values (numbers, strings, tuples, records), never a
tensor: reading one needs no device and no torch, and a result pickles without torch (for a run in its own
process). Images and weight grids are nested tuples of floats (`Grid`, `Image`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .indices import ravel, unravel
from .records import EvalResult, Grid, StepRecord, ratio

Image = tuple[Grid, ...]  # channels x height x width


# -- a traced step (nktui.engine.debugger.step_trace) ------------------------------------------------------------------
@dataclass(frozen=True)
class ForwardLayer:
    name: str
    kind: str
    shape: tuple[int, ...]
    mean: float
    std: float
    dead_fraction: float | None  # ReLU-like layers: units that were 0 for the whole batch


@dataclass(frozen=True)
class BackwardLayer:
    name: str
    kind: str
    grad_norm: float  # ‖dL/d(output of this layer)‖ over the batch


@dataclass(frozen=True)
class ParamUpdate:
    name: str
    shape: tuple[int, ...]
    grad_norm: float
    lr_grad_norm: float  # ‖-lr * grad‖
    update_norm: float  # ‖W_after - W_before‖
    difference_norm: float  # ‖(W_after - W_before) - (-lr * grad)‖
    weight_norm_before: float
    weight_norm_after: float
    examples: tuple[tuple[int, float, float, float], ...]  # (flat index, before, after, grad) of the largest |grad|

    @property
    def update_ratio(self) -> float:
        return ratio(self.update_norm, self.weight_norm_before)


@dataclass(frozen=True)
class StepTrace:
    step: int
    lr: float
    optimizer: str
    batch_size: int
    sample_index: int
    sample_image: Image  # channels x height x width, pixels as the model saw them
    classes: tuple[str, ...]
    label: int
    logits: tuple[float, ...]
    probabilities: tuple[float, ...]
    sample_loss: float  # -log p[label]
    batch_loss: float
    batch_accuracy: float
    forward: tuple[ForwardLayer, ...]
    backward: tuple[BackwardLayer, ...]
    updates: tuple[ParamUpdate, ...]
    update_rule: str  # one line: how the optimizer's update relates to -lr * grad
    record: StepRecord | None = None

    @property
    def predicted(self) -> int:
        return max(range(len(self.probabilities)), key=self.probabilities.__getitem__)


# -- LR what-if (nktui.engine.debugger.whatif) -------------------------------------------------------------------------
@dataclass(frozen=True)
class WhatIf:
    step: int  # the step the curve is about (the next one)
    current_lr: float
    lrs: tuple[float, ...]  # log-spaced, ascending; current_lr is one of them, exactly
    losses: tuple[float, ...]  # loss on the step's batch after a step at each LR
    loss_now: float  # loss on the same batch before the step

    @property
    def best_lr(self) -> float:
        finite = [(loss, lr) for lr, loss in zip(self.lrs, self.losses) if loss == loss and loss != float("inf")]
        return min(finite)[1] if finite else self.current_lr


# -- the loss surface (nktui.engine.debugger.landscape) ----------------------------------------------------------------
MODES = ("weights", "random", "path")
DEFAULT_RESOLUTION = 31
DEFAULT_SAMPLES = 256
BUDGET_SECONDS = 5.0  # training waits while a surface computes: a grid that would take longer is made coarser


class SurfaceCancelled(Exception):
    """The user cancelled the surface; the weights are as they were."""


@dataclass(frozen=True)
class WeightRef:
    """One weight: a parameter's name and the index of the entry in it."""

    name: str
    index: tuple[int, ...]

    def __str__(self) -> str:
        return f"{self.name}[{','.join(map(str, self.index))}]"

    def flat(self, shape: tuple[int, ...]) -> int:
        return ravel(self.index, shape)


def parse_weight_ref(text: str, shapes: Mapping[str, tuple[int, ...]]) -> WeightRef:
    """`fc.weight[3,17]`, `fc.weight 3 17` or a flat index `fc.weight[209]` -> WeightRef; ValueError says why not."""
    match = re.fullmatch(r"\s*([\w.\-]+)\s*(?:\[([\d,\s]*)\]|([\d,\s]*))\s*", text or "")
    if not match:
        raise ValueError(f"write a weight as name[i,j], e.g. {_example(shapes)}; not {text!r}")
    name, numbers = match.group(1), (match.group(2) if match.group(2) is not None else match.group(3)) or ""
    if name not in shapes:
        raise ValueError(f"no parameter {name!r}; the model has {', '.join(shapes)}")
    shape = tuple(shapes[name])
    index = tuple(int(n) for n in re.split(r"[,\s]+", numbers.strip()) if n)
    if len(index) == 1 and len(shape) > 1:  # a flat index into the whole tensor
        flat, total = index[0], 1
        for size in shape:
            total *= size
        if flat >= total:
            raise ValueError(f"{name} has {total} weights: index {flat} is out of range")
        index = unravel(flat, shape)
    if len(index) != len(shape):
        raise ValueError(f"{name} has shape {'x'.join(map(str, shape)) or 'scalar'}: give {len(shape)} indices")
    for i, size in zip(index, shape):
        if i >= size:
            raise ValueError(f"index {i} is out of range for {name} of shape {'x'.join(map(str, shape))}")
    return WeightRef(name, index)


def _example(shapes: Mapping[str, tuple[int, ...]]) -> str:
    for name, shape in shapes.items():
        return f"{name}[{','.join('0' for _ in shape)}]"
    return "fc.weight[0,0]"


@dataclass(frozen=True)
class SurfaceRequest:
    mode: str = "weights"
    layer: str | None = None  # `weights` without w1/w2: the two largest-|gradient| weights of this layer
    w1: WeightRef | None = None
    w2: WeightRef | None = None
    resolution: int = DEFAULT_RESOLUTION  # points per side (odd: the centre is a grid point)
    span: float | None = None  # half the grid's width in the axes' units; None: fit the path
    samples: int = DEFAULT_SAMPLES
    seed: int = 0  # of the random directions
    with_slice: bool = True
    budget: float | None = BUDGET_SECONDS  # seconds the grid may take: fewer points (and samples) if it would
    # take longer, measured on one forward pass first; None: exactly `resolution`, however long


@dataclass(frozen=True)
class PathPoint:
    step: int
    x: float
    y: float


@dataclass(frozen=True)
class LineSlice:
    """Loss at theta_before + t * (theta_after - theta_before) for each t; t = 1 is the weights now."""

    ts: tuple[float, ...]
    losses: tuple[float, ...]
    from_step: int
    to_step: int
    source: str  # "last update" or "trajectory"


@dataclass(frozen=True)
class Surface:
    step: int  # updates made when it was computed
    mode: str
    x_label: str
    y_label: str
    xs: tuple[float, ...]
    ys: tuple[float, ...]
    losses: Grid  # losses[j][i]: the loss at offsets (xs[i], ys[j])
    centre_loss: float  # the loss of the weights as they are (offset 0, 0)
    path: tuple[PathPoint, ...]  # oldest first; the last one is the centre
    path_share: float | None  # share of the movement since the path's first point that lies in this plane
    samples: int
    seconds: float
    w1: WeightRef | None = None
    w2: WeightRef | None = None
    line: LineSlice | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def span(self) -> float:
        return self.xs[-1]


# -- a layer snapshot (nktui.engine.debugger.layer_snapshot) -----------------------------------------------------------
@dataclass(frozen=True)
class LayerSnapshot:
    name: str
    shape: tuple[int, ...]
    step: int  # updates made when the snapshot was taken
    weight: Grid  # the weight now (after the last update), as a 2-D grid, pooled if large
    grad: Grid | None  # the gradient the last update used
    update: Grid | None  # W_after - W_before of the last update, when that step was observed
    pooled: bool  # True when cells are averages of several weights
    row_images: tuple[Grid, ...] = ()  # per output row, the weights reshaped to the input image (H x W)
    row_grad_images: tuple[Grid, ...] = ()
    row_update_images: tuple[Grid, ...] = ()
    kernels: tuple[Grid, ...] = ()  # conv weights: per output filter, its kernel (kh x kw), mean over in-channels
    kernel_grads: tuple[Grid, ...] = ()
    kernel_updates: tuple[Grid, ...] = ()
    kernel_filters: int = 0  # how many output filters the layer has (kernels holds the first max_kernels)


# -- a detailed evaluation (nktui.engine.evaluation) -------------------------------------------------------------------
@dataclass(frozen=True)
class ClassMetrics:
    """One class, one-vs-rest: precision = TP / predicted, recall = TP / support, accuracy = (TP + TN) / total."""

    name: str
    support: int  # samples of this class
    predicted: int  # samples predicted as this class
    correct: int  # true positives
    precision: float | None  # None when nothing was predicted as this class
    recall: float | None  # None when the split holds no sample of this class
    accuracy: float


@dataclass(frozen=True)
class WrongExample:
    """A misclassified sample: its position in the split, its label, the prediction and the predicted class's
    softmax probability (the model's confidence), and the probability it gave the true class."""

    index: int
    true: int
    predicted: int
    probability: float
    true_probability: float
    pixels: Image  # channels x height x width, as the model saw them (scaled, not normalised)


@dataclass(frozen=True)
class Evaluation:
    result: EvalResult
    classes: tuple[ClassMetrics, ...]
    wrong: tuple[WrongExample, ...]
    pixel_range: tuple[float, float] = (0.0, 1.0)  # the range of the pixels of the whole split's examples shown

    @property
    def split_size(self) -> int:
        return self.result.size


def class_metrics(result: EvalResult) -> tuple[ClassMetrics, ...]:
    """Per-class precision, recall and one-vs-rest accuracy from the confusion matrix (rows: true, columns:
    predicted)."""
    confusion = result.confusion
    total = sum(map(sum, confusion))
    out = []
    for k, name in enumerate(result.classes):
        tp = confusion[k][k]
        support = sum(confusion[k])
        predicted = sum(row[k] for row in confusion)
        tn = total - support - predicted + tp
        out.append(
            ClassMetrics(
                name=str(name),
                support=support,
                predicted=predicted,
                correct=tp,
                precision=tp / predicted if predicted else None,
                recall=tp / support if support else None,
                accuracy=(tp + tn) / total if total else 0.0,
            )
        )
    return tuple(out)


# -- a run's end (nktui.engine.commands.finish) -----------------------------------------------------------------
@dataclass(frozen=True)
class Finished:
    """What the training thread reports at a run's end (the `Finish` command): the step reached, whether last.pt
    could be written (`save_error` says why not: weights holding nan/inf, or the OS's words for a full disk;
    `unsaved`: it could not be written at all, as opposed to being refused), both evaluations of the final weights,
    and `trace`, the traceback of an unexpected save error, for the run's log."""

    step: int
    epoch: int
    train: EvalResult
    val: EvalResult
    save_error: str | None = None
    unsaved: bool = False
    trace: str | None = None
