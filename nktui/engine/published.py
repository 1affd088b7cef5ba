"""What the training side publishes for readers on other threads, as immutable values on the controller: the
run's `RunInfo` (`Controller.info`), the live step counter (`Controller.step_count`) and, on CUDA, the newest GPU
reading (`Controller.gpu`, taken once a second by a thread of its own, never by the UI).

`publish(trainer, controller)` runs on the training thread where a reader may look next: when the run is built,
after each command, at each flush and before the loop waits. It replaces `info` only when something in it
changed (the step limit, the rewind buffer), so a reader can compare by identity.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

from nktui.protocol.run_info import DataSummary, RewindReach, RunInfo

from .devices import describe_device


def rewind_reach(trainer) -> RewindReach:
    rewinds = trainer.rewinds
    return RewindReach(rewinds.oldest_step, len(rewinds), rewinds.memory_bytes)


def describe(trainer) -> RunInfo:
    """The RunInfo of a built trainer (shapes and names only: no tensor is read)."""
    data = trainer.data
    device = trainer.device
    return RunInfo(
        layers=tuple(trainer.instruments.names),
        shapes=tuple(trainer.instruments.shapes),
        parameters=tuple(trainer.trajectory.names),
        parameter_shapes=tuple(trainer.trajectory.shapes),
        step_limit=trainer.step_limit,
        device=str(device),
        device_type=device.type,
        device_description=describe_device(device),
        data=DataSummary(str(getattr(data, "name", "")), tuple(data.input_shape), tuple(data.classes),
                         int(data.train_size), int(data.val_size), int(data.steps_per_epoch)),
        rewinds=rewind_reach(trainer),
    )


def publish(trainer, controller) -> None:
    """On the training thread: the step counter, and a new RunInfo when the step limit or the rewinds changed."""
    controller.step_count = trainer.step_count
    info = controller.info
    if info is None:
        controller.info = describe(trainer)
        return
    reach = rewind_reach(trainer)
    if reach != info.rewinds or trainer.step_limit != info.step_limit:
        controller.info = replace(info, rewinds=reach, step_limit=trainer.step_limit)


def watch_gpu(controller, device: Any) -> threading.Thread | None:
    """On CUDA: a daemon thread that puts the card's reading (`nktui.engine.gpu`) on `controller.gpu` once a
    second while the training thread lives. None on any other device."""
    from .gpu import INTERVAL, gpu_monitor

    monitor = gpu_monitor(device)
    if monitor is None:
        return None
    controller.gpu = monitor.reading()

    def loop() -> None:
        trainer_thread = controller.thread
        while trainer_thread is not None:
            trainer_thread.join(INTERVAL)
            if not trainer_thread.is_alive():
                return
            controller.gpu = monitor.reading()

    thread = threading.Thread(target=loop, name="nktui-gpu", daemon=True)
    thread.start()
    return thread
