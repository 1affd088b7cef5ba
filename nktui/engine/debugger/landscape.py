"""The loss surface around the current weights, the descent path projected onto it, and the 1-D slice along the
last update. Runs on the training thread (one `controller.call`), so training waits while it computes.

A surface is the loss on a fixed evaluation batch (the first `samples` validation samples, model in eval mode)
over a grid of points `theta + a * d1 + b * d2`, for offsets a, b in [-span, span]. The two directions are:

- `weights`: two single weights W1 and W2 (d1, d2 are one-hot): the loss as a function of those two weights with
  every other weight held where it is now. Default: the two largest-|gradient| weights of a layer.
- `random`: two random directions, normalised per filter as in Li et al. 2018 ("Visualizing the Loss Landscape of
  Neural Nets"): each output row (a neuron's weights, a conv filter) of a direction is scaled to the norm of that
  row of the weights; biases and other 1-D parameters get no direction. Offsets are multiples of the directions.
- `path`: the two principal directions of the recorded trajectory (Li et al. section 7): the plane in which the
  recent steps moved the most, so the descent path shows in full. Offsets are parameter-space distances.

The path is every recorded step (`nktui.probe.trajectory`) projected onto the plane, the current weights at the
centre. The slice is the loss along the newest update W_after - W_before from -2x to +3x that step (1x: where the
step took the weights). Every weight is put back bit for bit when the computation ends, is cancelled or fails.
Progress and cancelling go through a `SurfaceProgress` that the UI polls and the training thread writes. The
request and the result (`SurfaceRequest`, `Surface`, `WeightRef`) are `nktui.protocol.results`' types.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from ...protocol.results import (
    DEFAULT_SAMPLES,
    MODES,
    LineSlice,
    PathPoint,
    Surface,
    SurfaceCancelled,
    SurfaceRequest,
)
from .landscape_directions import (
    Directions,
    largest_gradient_weights,
    path_directions,
    random_directions,
    weight_directions,
)

MIN_RESOLUTION = 9
SLICE_RANGE = (-2.0, 3.0)  # in units of the last step: 0 is before it, 1 where it went
SLICE_POINTS = 51
PATH_MARGIN = 1.25  # the grid reaches this far beyond the path's furthest point
# Below this many weights x samples, a forward pass is microseconds of work: one CPU thread does it faster than
# several that wait for each other between ops, many times faster on a busy machine (benchmarks/RESULTS.md).
SINGLE_THREAD_WORK = 1 << 24


class SurfaceProgress:
    """Grid points done out of total, written by the training thread, read by any thread; `cancel()` from any
    thread stops the computation at the next grid row."""

    def __init__(self) -> None:
        self.done = 0
        self.total = 0
        self.phase = "waiting for the training thread"
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        if self._cancel.is_set():
            raise SurfaceCancelled("cancelled")

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


def grid_offsets(span: float, resolution: int) -> tuple[float, ...]:
    """`resolution` offsets from -span to +span; the middle one is exactly 0 when resolution is odd."""
    if resolution < 2:
        return (0.0,)
    return tuple(span * (2 * i - (resolution - 1)) / (resolution - 1) for i in range(resolution))


def evaluation_batch(trainer, samples: int = DEFAULT_SAMPLES) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `samples` validation samples: the fixed batch every surface of a run is computed on."""
    return next(iter(trainer.data.eval_batches("val", batch_size=samples)))


def compute_surface(trainer, request: SurfaceRequest, progress: SurfaceProgress | None = None) -> Surface:
    """The loss surface described by `request` around the trainer's weights now (see the module's docstring)."""
    if request.mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {request.mode!r}")
    progress = progress or SurfaceProgress()
    progress.check()
    started = time.perf_counter()
    trainer.flush()
    model = trainer.model
    x, y = evaluation_batch(trainer, request.samples)
    notes: list[str] = []
    w1, w2 = request.w1, request.w2
    if request.mode == "weights" and (w1 is None or w2 is None):
        w1, w2 = largest_gradient_weights(model, request.layer, x, y)
    named = dict(model.named_parameters())
    now = torch.cat([p.detach().reshape(-1).float().cpu() for p in named.values()])
    history = [(s, v) for s, v in trainer.trajectory.entries(up_to=trainer.step_count) if s < trainer.step_count]
    if request.mode == "weights":
        directions = weight_directions(model, w1, w2)
    elif request.mode == "random":
        directions = random_directions(model, request.seed)
    elif not trainer.trajectory.enabled:
        raise ValueError(f"the path plane needs the recorded steps, and there are none: {trainer.trajectory.describe()}")
    else:
        directions = path_directions(model, [v for _, v in history], now, trainer.trajectory.offsets)
    path, share = _project_path(history, now, directions, trainer.step_count)
    if not trainer.trajectory.enabled:
        notes.append(f"no descent path: {trainer.trajectory.describe()}")
    span = request.span if request.span is not None else _fit_span(request.mode, path, directions)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _threads_for(model, len(y)):
            resolution, x, y, note, estimate = _fit_budget(model, x, y, request)
            if note:
                notes.append(note)
            offsets = grid_offsets(span, resolution)
            progress.total = len(offsets) ** 2 + (SLICE_POINTS if request.with_slice else 0)
            progress.done = 0
            progress.phase = "loss surface" + (f", about {estimate:.0f} s" if estimate >= 1 else "")
            losses = _grid(model, x, y, directions, offsets, progress)
            line, note = None, ""
            if request.with_slice:
                progress.phase = "slice along the last step"
                line, note = _line_slice(trainer, history, x, y, progress)
            if note:
                notes.append(note)
    finally:
        model.train(was_training)
    centre = len(offsets) // 2
    return Surface(
        step=trainer.step_count,
        mode=request.mode,
        x_label=directions.x_label,
        y_label=directions.y_label,
        xs=offsets,
        ys=offsets,
        losses=losses,
        centre_loss=losses[centre][centre],
        path=path,
        path_share=share,
        samples=len(y),
        seconds=time.perf_counter() - started,
        w1=w1,
        w2=w2,
        line=line,
        notes=tuple(notes),
    )


def _fit_budget(model, x, y, request: SurfaceRequest):
    """(resolution, x, y, note, seconds): the request's grid, or a coarser one (then fewer samples) whose forward
    passes fit `request.budget` seconds, timed on one pass first; the note says what was made coarser and why; the
    seconds the grid should take (0 when not timed)."""
    resolution = request.resolution
    if request.budget is None:
        return resolution, x, y, "", 0.0
    start = time.perf_counter()
    _loss(model, x, y).item()  # (.item(): the host waits for the pass, so that it is timed whole)
    each = time.perf_counter() - start
    extra = SLICE_POINTS if request.with_slice else 0
    if each * (resolution**2 + extra) <= request.budget:
        return resolution, x, y, "", each * (resolution**2 + extra)
    fitting = int(max(request.budget / each - extra, 0) ** 0.5)
    coarse = max(MIN_RESOLUTION, min(resolution, fitting - (1 - fitting % 2)))  # odd: the centre is a grid point
    samples = len(y)
    while samples > 32 and each * samples / len(y) * (coarse**2 + extra) > request.budget:
        samples //= 2
    note = (f"grid {coarse}x{coarse} of {resolution}x{resolution}"
            + (f" on {samples} of {len(y)} samples" if samples < len(y) else "")
            + f": one forward pass takes {each * 1000:.0f} ms, and the whole grid would have taken about "
            f"{each * (resolution**2 + extra):.0f} s (training waits while it computes)")
    return coarse, x[:samples], y[:samples], note, each * samples / len(y) * (coarse**2 + extra)


@contextmanager
def _threads_for(model, samples: int):
    """One intra-op thread for a small model on the CPU while the grid is computed; the run's count afterwards."""
    params = list(model.parameters())
    small = sum(p.numel() for p in params) * samples <= SINGLE_THREAD_WORK
    if not params or params[0].device.type != "cpu" or not small or torch.get_num_threads() == 1:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _loss(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x), y)


def _grid(model, x, y, directions: Directions, offsets, progress: SurfaceProgress) -> tuple[tuple[float, ...], ...]:
    """losses[j][i] at theta + offsets[i] * d1 + offsets[j] * d2; every weight restored afterwards."""
    rows = []
    with directions.moving() as move:
        for b in offsets:
            progress.check()
            row = []
            for a in offsets:
                move(a, b)
                row.append(_loss(model, x, y))
            rows.append(torch.stack(row))
            progress.done += len(offsets)
    return tuple(tuple(r) for r in torch.stack(rows).float().tolist())


def _line_slice(trainer, history, x, y, progress: SurfaceProgress) -> tuple[LineSlice | None, str]:
    """The loss along the newest update, from -2x to +3x of it; (None, why) when there is no update to follow."""
    names = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    updates = {n: trainer.last_update(n) for n in names}
    source, from_step = "last update", trainer.step_count - 1
    if any(u is None for u in updates.values()):
        if not history or trainer.step_count == 0:
            return None, "no step taken yet: take a step (n) for the slice along it"
        latest = trainer.trajectory.entries(up_to=trainer.step_count)
        if not latest or latest[-1][0] != trainer.step_count:
            return None, "the newest step was not observed: pause and take a step (n) for the slice along it"
        from_step, before = history[-1]
        delta = latest[-1][1] - before
        offsets = trainer.trajectory.offsets
        params = dict(trainer.model.named_parameters())
        updates = {
            n: delta[offsets[n] : offsets[n] + params[n].numel()].view_as(params[n]).to(params[n].device, params[n].dtype)
            for n in names
        }
        source = "trajectory"
    lo, hi = SLICE_RANGE
    ts = tuple(lo + (hi - lo) * i / (SLICE_POINTS - 1) for i in range(SLICE_POINTS))
    params = dict(trainer.model.named_parameters())
    moved = [params[n] for n in names]
    steps = [updates[n] for n in names]
    base = [p.detach().clone() for p in moved]
    values = []
    try:
        for t in ts:
            progress.check()
            torch._foreach_copy_(moved, base)
            torch._foreach_add_(moved, steps, alpha=t - 1.0)  # t = 1: the weights now
            values.append(_loss(trainer.model, x, y))
            progress.done += 1
    finally:
        torch._foreach_copy_(moved, base)
    losses = tuple(torch.stack(values).float().tolist())
    return LineSlice(ts, losses, from_step, trainer.step_count, source), ""


def _project_path(history, now: torch.Tensor, directions: Directions, step: int):
    """Each recorded step's weights minus the weights now, in the plane's coordinates; and the share of the
    movement since the oldest one that lies in the plane."""
    if not history:
        return (PathPoint(step, 0.0, 0.0),), None
    deltas = torch.stack([v for _, v in history]) - now  # (T, P)
    coords = directions.project(deltas)  # (T, 2)
    points = [PathPoint(s, float(a), float(b)) for (s, _), (a, b) in zip(history, coords.tolist())]
    points.append(PathPoint(step, 0.0, 0.0))
    first = deltas[0]
    moved = float(first.double().square().sum())
    share = None
    if moved > 0:
        in_plane = directions.in_plane(first[None])[0]
        share = min(1.0, float(in_plane.double().square().sum()) / moved)
    return tuple(points), share


def _fit_span(mode: str, path: tuple[PathPoint, ...], directions: Directions) -> float:
    extent = max((max(abs(p.x), abs(p.y)) for p in path), default=0.0)
    if mode == "random":
        return 1.0  # as in Li et al.: one direction's worth each way
    return max(PATH_MARGIN * extent, directions.min_span)
