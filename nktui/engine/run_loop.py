"""The training thread's loop: commands at each step boundary, steps, flushes, and the end of a run.

`run_loop(trainer, controller)` is what `Trainer.run` runs on the training thread. Between steps it takes the
controller's commands (`nktui.engine.commands`) and runs them on the trainer; it steps while running, or once
for a single step; it flushes when somebody will look (an observed step), before it pauses, and at least every
FLUSH_EVERY steps, so the host waits for the device a few times a second, not once a step. When a flush finds a
step that trips a watchpoint, `flush_running` puts the trainer just before that step and pauses the run
(`nktui.engine.debugger.fault`). A failure ends the run FAILED, with last.pt the state just before the failing step.
"""

from __future__ import annotations

from ..protocol.state import RunState
from .commands import execute
from .control import Controller
from .debugger.fault import stop_before
from .published import publish, watch_gpu

FLUSH_EVERY = 64  # most steps kept on the device before their records are made


def flush_running(trainer, controller: Controller, *, hold: bool = True) -> bool:
    """The loop's flush: True when a watchpoint tripped, the trainer now stands just before that step and the
    run is paused."""
    trainer.flush(hold=hold)
    flagged = trainer.take_flagged()
    if flagged is None or not stop_before(trainer, flagged):
        publish(trainer, controller)
        return False
    publish(trainer, controller)
    controller.pause()
    return True


def run_loop(trainer, controller: Controller) -> None:
    """The loop: take commands at each step boundary, step, flush when someone will look. Ends on stop."""
    log_every = trainer.config.log_every
    checkpointer = trainer.checkpointer
    trainer.controller = controller
    controller.trainer = trainer
    controller.records = trainer.records
    publish(trainer, controller)  # RunInfo: readers know the run from here on
    watch_gpu(controller, trainer.device)

    def flush_before_waiting() -> bool:
        return flush_running(trainer, controller)

    calls: list = []  # the commands taken from the controller and not run yet
    try:
        if not controller.pause_requested:  # (a paused start reports PAUSED when it first waits)
            controller.report(RunState.RUNNING)
        while True:
            cmd = controller.next_command(can_step=not trainer.finished, before_wait=flush_before_waiting)
            calls = cmd.calls
            # Commands see every step taken so far: a watchpoint among the running steps leaves the trainer
            # paused just before the step that tripped it, and the commands run there (but no step is taken).
            tripped = bool(cmd.calls or cmd.stop) and flush_running(trainer, controller)
            if cmd.lr is not None:
                trainer.set_lr(cmd.lr)
            for work, future in cmd.calls:
                if future.set_running_or_notify_cancel():
                    try:
                        result = work(trainer) if callable(work) else execute(trainer, work)
                    except BaseException as exc:  # the caller gets the error; the run goes on
                        publish(trainer, controller)
                        future.set_exception(exc)
                    else:
                        publish(trainer, controller)  # (a rewind, a step limit: readers see it with the result)
                        future.set_result(result)
            calls = []
            if cmd.stop:
                break
            if tripped:
                continue
            if controller.state is RunState.FINISHED and not trainer.finished:  # the limit was raised: go on
                controller.pause()  # from paused, as after any stop: space runs, n steps
            if not cmd.take_step:
                continue
            observe = cmd.observe or trainer.step_count == 0 or (trainer.step_count + 1) % log_every == 0
            trainer.rewinds.before_step(trainer, single=cmd.single_step)
            trainer.train_step(observe)
            controller.step_count = trainer.step_count
            evaluate = trainer.eval_due() or trainer.finished
            if observe or evaluate or controller.pause_requested or len(trainer.pending) >= FLUSH_EVERY:
                if flush_running(trainer, controller, hold=not cmd.single_step):
                    continue  # a watchpoint: the trainer stands just before the step that tripped it, paused
            if checkpointer is not None and checkpointer.due(trainer.step_count):
                checkpointer.try_save(trainer)  # (weights holding nan or inf are refused: last.pt stays good)
            if evaluate:
                trainer.evaluate()
            if trainer.finished:
                publish(trainer, controller)
                controller.report(RunState.FINISHED)
        trainer.flush()
        publish(trainer, controller)
        if controller.state is not RunState.FINISHED:
            controller.report(RunState.STOPPED)
    except BaseException as exc:
        for _, future in calls:  # taken but not run: their callers hear why, rather than wait for good
            if not future.done():
                future.set_exception(RuntimeError(f"the run failed before it got to this: {exc}"))
        try:
            trainer.flush()  # the steps before the fault are real; keep their records
            publish(trainer, controller)
        except BaseException:
            pass
        if checkpointer is not None:
            checkpointer.after_fault(trainer)  # last.pt: the state just before the failing step
        controller.fail(exc)
