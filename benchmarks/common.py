"""Shared pieces of the benchmarks: the standard workload, a bare PyTorch loop, and fresh threads to run them on.

Workload (issue #2): MLP 784-128-64-10, batch 64, plain SGD, on MNIST-shaped synthetic data (60,000 28x28 images,
10 classes) so the benchmarks need no download. The bare loop uses the same model, initial weights, data and
batch order as nktui's trainer; it is the plain loop a user would write: gather, forward, loss, backward, step.

Threads: nktui trains on a thread of its own and the UI thread never runs tensor code (why: ARCHITECTURE.md, "Two
threads, two directions"), so each measured loop, bare or nktui, runs on a fresh thread and the main thread runs
no tensor code: both loops then run exactly as they would alone in a process.
"""

from __future__ import annotations

import threading
import time

from nktui.training import RunConfig  # no torch: the TUI benchmark's app process imports this module too

BATCH = 64
# Evaluation and log lines are work a user asks for on top of training; the benchmarks measure training alone.
CONFIG = RunConfig(
    model="mlp", hidden=(128, 64), optimizer="sgd", lr=0.05, batch_size=BATCH, device="cpu", eval_every=0, seed=0,
    log_every=10**9,
)


def in_fresh_thread(fn, *args):
    """fn(*args) on a new thread, which ends (and takes its CPU thread pool with it) before this returns."""
    result: list = []
    errors: list = []

    def target() -> None:
        try:
            result.append(fn(*args))
        except BaseException as exc:  # re-raised on the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def synthetic_mnist(n: int = 60_000, seed: int = 0):
    """Class-dependent blobs in 28x28, uint8 pixels: learnable, the size and shape of MNIST. An ImageSet."""
    import torch

    from nktui.engine.datasets import ImageSet

    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=gen)
    centres = torch.rand(10, 1, 28, 28, generator=gen)
    pixels = (centres[labels] * 200 + torch.rand(n, 1, 28, 28, generator=gen) * 55).to(torch.uint8)
    return ImageSet("synthetic-mnist", pixels, labels, tuple(str(i) for i in range(10)), scale=1 / 255)


class BareLoop:
    """The plain loop a user would write: gather, forward, loss, backward, step. On a model, optimizer and data
    built exactly as nktui builds them (borrowed from a Trainer that never trains). Build and run it on one thread."""

    def __init__(self, images, config: RunConfig = CONFIG) -> None:
        from nktui.training import Trainer

        trainer = Trainer(config.replace(steps=10**9), data=images)
        self.model, self.optimizer, self.data = trainer.model, trainer.optimizer, trainer.data
        self.step = 0

    def run(self, steps: int) -> None:
        import torch.nn.functional as F

        model, optimizer = self.model, self.optimizer
        x_all, y_all, order = self.data.train_x, self.data.train_y, self.data.order
        for step in range(self.step, self.step + steps):
            idx = order.indices(step)
            x, y = x_all[idx], y_all[idx]
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        self.step += steps
        loss.item()  # wait for the device before anyone stops a clock

    def run_for(self, seconds: float, chunk: int = 20) -> tuple[int, float, float]:
        """Train for about `seconds`: (steps, wall seconds, CPU seconds of this thread)."""
        start, cpu_start = time.perf_counter(), time.thread_time()
        steps = 0
        while time.perf_counter() - start < seconds:
            self.run(chunk)
            steps += chunk
        return steps, time.perf_counter() - start, time.thread_time() - cpu_start


def bare_loop(images, steps: int, config: RunConfig = CONFIG) -> tuple[float, float]:
    """Steps per second of the plain loop, by the wall clock and by the CPU time of the training thread. Call it
    on a fresh thread."""
    loop = BareLoop(images, config.replace(steps=steps))
    start, cpu_start = time.perf_counter(), time.thread_time()
    loop.run(steps)
    return steps / (time.perf_counter() - start), steps / (time.thread_time() - cpu_start)
