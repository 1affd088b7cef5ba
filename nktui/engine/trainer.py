"""Trainer: one model, its data and optimizer; `step()` for one update, `evaluate()`, and the thread loop.

    trainer = Trainer(RunConfig(model="mlp", lr=0.05))
    rec = trainer.step()           # synchronous: forward, loss, backward, update; a StepRecord
    ctl = trainer.start()          # or: the same steps on a background thread, steered through ctl

Every step keeps its loss, logits and each layer's gradient norm on the device; `flush()` turns the pending steps
into `StepRecord`s with one host transfer, checks every one of them against the watchpoints in step order, and
publishes them into `trainer.records`. The thread loop (`run()`, in `nktui.engine.run_loop`) flushes when somebody
will look, before it pauses, and at least every FLUSH_EVERY steps; when a watchpoint trips while the run trains,
it goes back to just before that step and pauses (`nktui.engine.debugger.fault`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..probe.flush_check import Flagged, check_in_order
from ..probe.instruments import Instruments
from ..probe.pending import PendingSteps
from ..probe.trajectory import Trajectory
from ..probe.watch import Watcher
from ..protocol.config import LIVE_UPDATES, RunConfig, usable_cores
from ..protocol.errors import ConfigError
from ..protocol.records import EvalResult, Resumed, Rewound, StepRecord, WatchHit
from ..protocol.results import StepTrace
from ..protocol.state import RunState
from .buffer import RecordBuffer
from .run_loop import run_loop
from .control import Controller, launch
from .batches import DataSource, TensorSource, load_data
from .debugger.rewind import RewindBuffer
from .debugger.step_trace import Tracer
from .devices import resolve_device
from .evaluation import evaluate_split
from .models import build_on
from .optim import build_optimizer, get_lr, set_lr
from .datasets import ImageSet
from .state import Checkpointing, resume_from, seed_everything



class Trainer:
    def __init__(
        self,
        config: RunConfig,
        *,
        data: DataSource | ImageSet | Callable[[], DataSource | ImageSet] | None = None,
        model: nn.Module | None = None,
        resume: Mapping[str, Any] | None = None,
        checkpointer: Checkpointing | None = None,
        histogram_bins: int = 0,
    ) -> None:
        """`data`: None for the configured data set, your own `ImageSet` (uint8 or float pixels N x C x H x W, labels,
        class names), a ready `DataSource`, or a zero-argument function returning one of those (called here, so on
        the training thread when launched). `model`: your own module instead of `config.model`. `resume`: a
        checkpoint (a state dict: `nktui.run.checkpoint.load_checkpoint`) to continue from; CheckpointError if it is of
        another model or data set. `checkpointer`: writes last.pt every `checkpointer.every` steps and after a fault
        (`nktui.engine.state.Checkpointing`: the run layer's `Checkpointer`)."""
        self.config = config.validate()
        self.device = resolve_device(config.device)
        if config.threads:
            # The intra-op pool is process-wide; only the training thread runs tensor ops, so this is its size.
            torch.set_num_threads(min(config.threads, usable_cores()))
        seed_everything(config.seed)
        if callable(data):  # a factory: make the data here, on the thread that builds the trainer
            data = data()
        if data is None:
            data = load_data(config, self.device)
        elif isinstance(data, ImageSet):  # the caller's own tensors: split and place them like a built-in set
            data = TensorSource(data, self.device, config.val_fraction, config.batch_size, config.seed)
        self.data = data
        if model is None:  # (checked: a model too big for memory, or a user's that returns the wrong logits)
            model = build_on(config, self.data.input_shape, self.data.num_classes, self.device)
        self.model = model.to(self.device)
        self.optimizer = build_optimizer(config, self.model)
        self.instruments = Instruments(self.model, activations=config.activations, histogram_bins=histogram_bins)
        self.trajectory = Trajectory(self.model)  # weights at observed steps: the loss surface's descent path
        self.trajectory.record(0)
        self._named_params = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        self.rewinds = RewindBuffer(depth=config.rewind_depth, interval=config.rewind_every)
        self.watcher = Watcher(config, self.instruments.names, self.instruments.shapes)
        self.watch_hit: WatchHit | None = None  # the first watchpoint of the newest step that tripped any
        self.watch_hits: list[WatchHit] = []  # all the watchpoints that step tripped
        self.records: RecordBuffer[StepRecord | EvalResult] = RecordBuffer()
        self.step_count = 0  # updates made so far; the next step is number step_count + 1
        self.step_limit = config.step_limit(self.data.steps_per_epoch)
        self.last_eval: EvalResult | None = None
        self.pending = PendingSteps(self.instruments)  # steps taken whose numbers are still on the device
        self._observed_step = 0  # the latest step whose update the instruments measured
        self._updating = False  # inside optimizer.step()
        self._flagged: Flagged | None = None  # a step a flush found tripping a watchpoint, for the loop to handle
        self.checkpointer = checkpointer
        self.controller: Controller | None = None  # the one steering `run()`: commands report progress to it
        if resume is not None:
            resume_from(self, dict(resume))
            self.records.publish(Resumed(self.step_count))

    # -- learning rate -----------------------------------------------------------------------------------------
    @property
    def lr(self) -> float:
        return get_lr(self.optimizer)

    def set_lr(self, lr: object) -> float:
        """Use this rate from the next update on. ConfigError (a ValueError) for <= 0, nan, inf or text.
        Call it between steps: from another thread, use `Controller.set_lr`."""
        return set_lr(self.optimizer, lr)

    # -- progress ----------------------------------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        """The epoch the latest update belonged to (1-based; 0 before the first update)."""
        return self._epoch_of(self.step_count)

    def _epoch_of(self, step: int) -> int:
        return 0 if step == 0 else (step - 1) // self.data.steps_per_epoch + 1

    @property
    def finished(self) -> bool:
        return self.step_count >= self.step_limit

    # -- one update ----------------------------------------------------------------------------------------------
    def step(self) -> StepRecord:
        """One forward / backward / update on the calling thread, fully observed; returns its record."""
        self.rewinds.before_step(self, single=True)
        self.train_step(observe=True)
        return self.flush()[-1]

    def take_step(self, observe: bool = False, tracer: Tracer | None = None) -> torch.Tensor:
        """The step function alone, for the debugger's replays and for tests: one update, no rewind state kept, its
        numbers pending on the device until the next `flush()` (`discard_pending()` drops them). `observe`: with
        the per-layer statistics. Returns the loss, on the device. (`step()` is the same step, observed, with a
        rewind state kept before it and its record made.)"""
        return self.train_step(observe, tracer).detach()

    @property
    def trainable_params(self) -> list[tuple[str, nn.Parameter]]:
        """(name, parameter) of every parameter that is trained (requires grad), in the model's order."""
        return self._named_params

    @property
    def updating(self) -> bool:
        """Whether the trainer is inside the optimizer's update: a fault now may leave the weights half-updated."""
        return self._updating

    def rewind(self, steps: int = 1) -> Rewound:
        """Go back `steps` updates (see `nktui.engine.debugger.rewind`); RewindError if that is further than kept."""
        return self.rewind_to(self.step_count - steps)

    def rewind_to(self, step: int) -> Rewound:
        """Go back to the state after `step` updates, bit for bit; publishes a `Rewound` record."""
        self.flush()
        event = self.rewinds.rewind_to(self, step)
        self.forget_observed()
        self.watcher.reset()
        self.watch_hit = None
        self.records.publish(event)
        return event

    LIVE_SETTINGS = LIVE_UPDATES  # the fields whose Setting says live (the LR aside: set_lr)

    def update_live(self, **changes) -> None:
        """Change settings that take effect between steps without rebuilding anything: the watchpoints, the log
        interval, the step limit (ConfigError below the step the run is at)."""
        unknown = set(changes) - self.LIVE_SETTINGS
        if unknown:
            raise ValueError(f"{', '.join(sorted(unknown))} cannot change while training: restart with the new value")
        config = self.config.replace(**changes)
        if "steps" in changes:  # a new step limit: a finished run can go on (bitwise: nothing else changes)
            limit = config.step_limit(self.data.steps_per_epoch)
            if changes["steps"] is not None and limit < self.step_count:
                raise ConfigError(f"the run is at step {self.step_count} already: steps must be at least that")
            if changes["steps"] is None and config.epochs is not None:
                config = config.replace(epochs=None)
            self.step_limit = limit
        self.config = config
        self.watcher.config = self.config

    def forget_observed(self) -> None:
        """The instruments' last update belongs to a step that no longer happened."""
        self._observed_step = -1

    def discard_pending(self) -> None:
        """Forget steps not yet published (replayed steps that were published the first time)."""
        self.pending.clear()

    def trace_step(self, sample_index: int = 0) -> StepTrace:
        """One fully observed step, like `step()`, that also records its four phases (`debugger/step_trace.py`)."""
        tracer = Tracer(self.model, sample_index)
        self.rewinds.before_step(self, single=True)
        try:
            self.train_step(observe=True, tracer=tracer)
        finally:
            tracer.detach()
        record = self.flush()[-1]
        return tracer.finish(
            step=self.step_count, lr=record.lr, optimizer=self.optimizer, config=self.config,
            classes=self.data.classes, record=record,
        )

    def train_step(self, observe: bool, tracer: Tracer | None = None) -> torch.Tensor:
        """The step function: forward, loss, backward, update; the step's numbers stay on the device (pending)."""
        x, y = self.data.train_batch(self.step_count)  # a gather on the device, no host copy
        if not self.model.training:  # .train() walks every module: only when evaluation switched it off
            self.model.train()
        if observe:
            self.instruments.attach_hooks()  # forward hooks only on observed steps: zero cost otherwise
            if tracer is not None:
                tracer.attach()
            try:
                logits = self.model(x)
            finally:
                self.instruments.detach_hooks()
        else:
            logits = self.model(x)
        loss = F.cross_entropy(logits, y)  # softmax + cross-entropy against the labels, averaged over the batch
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # dL/dw for every weight
        lr = self.lr  # the rate this update uses
        self.rewinds.note_lr(self.step_count + 1, lr)  # (a float comparison; logs only changes)
        if tracer is not None:
            tracer.after_backward(x, y, logits, loss)
            tracer.before_update(self._named_params)
        health_row = None
        if observe:
            self.instruments.before_update()  # weight norms and a copy, on the device
        else:
            health_row = self.pending.health.write()  # every step's health check: each gradient's norm, no sync
        self._updating = True  # (a fault from here on may leave the weights half-updated)
        self.optimizer.step()  # w <- w - lr * dL/dw (plain SGD; momentum and Adam transform dL/dw first)
        self._updating = False
        observation = self.instruments.after_update() if observe else None
        if tracer is not None:
            tracer.after_update(self._named_params, lr)
        self.step_count += 1
        if observe:
            self._observed_step = self.step_count
            self.trajectory.record(self.step_count)
        # (loss and logits go to the pending steps as they are: their graph is freed by backward(), and a detach() a
        # step would cost two more tensors; the flush reads them under no_grad)
        self.pending.add(self.step_count, self._epoch_of(self.step_count), lr, loss, logits, y, observation, health_row)
        return loss

    def last_update(self, name: str) -> torch.Tensor | None:
        """W_after - W_before of parameter `name` in the latest update, if that update was observed; else None."""
        if self._observed_step != self.step_count or self.step_count == 0:
            return None
        return self.instruments.last_update(name)

    def flush(self, *, hold: bool = False) -> list[StepRecord]:
        """Turn pending steps into records (one host transfer for all of them), check each against the
        watchpoints in step order, and publish them with any hits. `hold` (the loop, while running): stop at the
        first step that trips a watchpoint and leave it to the fault finder (`self._flagged`), unpublished."""
        records, norms = self.make_records()
        return self.publish_checked(records, norms, hold=hold)

    def make_records(self) -> tuple[list[StepRecord], list[list[float] | None]]:
        """The pending steps as records, and each unobserved step's gradient norms; none are pending after."""
        return self.pending.take()

    def publish_checked(self, records: list[StepRecord], norms: list[list[float] | None], *,
                        hold: bool = False) -> list[StepRecord]:
        """Check records against the watchpoints in step order and publish them, each followed by its hits
        (`nktui.probe.flush_check`); with `hold`, a step that trips one is left to the fault finder."""
        checked = check_in_order(self.watcher, records, norms, hold=hold)
        if checked.flagged is not None:
            self._flagged = checked.flagged
        if checked.last_hits:
            self.watch_hit, self.watch_hits = checked.last_hits[0], checked.last_hits
        self.records.publish_many(checked.publish)
        return checked.records

    # -- evaluation ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, split: str = "val", on_batch: Callable | None = None) -> EvalResult:
        """Loss, accuracy and confusion matrix on the validation split (or "train"), for the weights as they are
        now. Validation results are published into `records`; the model's RNG-free eval mode leaves training
        bit-for-bit unaffected. `on_batch(x, y, logits)`, when given, sees every batch as it is evaluated."""
        if split not in ("val", "train"):
            raise ValueError(f"split must be 'val' or 'train', not {split!r}")
        self.flush()  # keep the records in order: steps before the evaluation of their weights
        loss, accuracy, confusion = evaluate_split(self.model, self.data, split, on_batch)
        result = EvalResult(step=self.step_count, epoch=self.epoch, loss=loss, accuracy=accuracy, confusion=confusion,
                            classes=self.data.classes, split=split)
        if split == "val":
            self.last_eval = result
            self.records.publish(result)
        return result

    def take_flagged(self) -> Flagged | None:
        """The step the last `flush(hold=True)` found tripping a watchpoint, if any, for the loop to hand to the
        fault finder; None after."""
        flagged, self._flagged = self._flagged, None
        return flagged

    def eval_due(self) -> bool:
        every = self.config.eval_every
        if every is None:
            every = self.data.steps_per_epoch
        return every > 0 and self.step_count % every == 0

    # -- the training thread -------------------------------------------------------------------------------------
    def start(self, *, paused: bool = False) -> Controller:
        """Train this trainer on a background thread; steer it with the returned Controller."""
        controller = launch(lambda: self, paused=paused)  # (the one way a training thread starts)
        controller.trainer = self  # at once, for the caller (the thread sets the same)
        controller.records = self.records
        return controller

    @classmethod
    def launch(cls, config: RunConfig, *, paused: bool = False, **kwargs) -> Controller:
        """Build the trainer *on* the training thread, then train there. What the app and the CLI use.

        Why build it there: every tensor op on one thread, none on the caller's (PyTorch's CPU pool and threads:
        ARCHITECTURE.md, "Two threads, two directions").
        """
        return launch(lambda: cls(config, **kwargs), paused=paused)

    def run(self, controller: Controller) -> None:
        """The thread loop (`nktui.engine.run_loop`): commands at each step boundary, steps, flushes. Ends on stop."""
        run_loop(self, controller)
