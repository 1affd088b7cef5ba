"""How much does nktui's trainer thread slow training down? Prints steps/s of a bare loop and of nktui, and the ratio.

    python benchmarks/overhead.py [--rounds 5] [--steps 1500] [--device cpu]

nktui runs as the app runs it: on its own thread, instruments on, with a reader that asks for a snapshot and
reads the records 10 times a second (what the UI does). The two alternate, round by round, in one process, so
both see the same machine. The ratio reported is the median of the per-round ratios (each round's pair ran
back to back, so slow drifts of a shared machine cancel). Target (issue #2): >= 0.97 on the CPU.
With --device cuda it also runs one round under torch.cuda.set_sync_debug_mode("warn") and reports whether any
host sync happened outside the read-outs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import CONFIG, bare_loop, in_fresh_thread, synthetic_mnist  # noqa: E402

from nktui.training import RunState, StepRecord, Trainer  # noqa: E402


def nktui_loop(images, steps: int, config, read_hz: float = 10.0) -> tuple[float, float, int]:
    """Steps per second of nktui's trainer thread with a reader at read_hz (wall clock, and CPU time of the
    training thread), and the number of reads.

    The trainer is built and run on its own thread (`Trainer.launch`), as in the app; this thread only reads."""
    controller = Trainer.launch(config.replace(steps=steps), data=images, paused=True)
    cpu_start = controller.call(lambda trainer: time.thread_time()).result()  # runs on the training thread
    trainer = controller.trainer
    reads = seq = 0
    start = time.perf_counter()
    controller.resume()
    while controller.state is not RunState.FINISHED:
        controller.request_snapshot()
        seq, records = trainer.records.since(seq)
        for record in records:  # touch what a UI would draw
            for layer in record.layers.values() if isinstance(record, StepRecord) else ():
                f"{layer.grad_norm:.3g} {layer.update_ratio:.1e}"
        reads += 1
        if controller.wait_for(lambda s: s.is_over, timeout=1 / read_hz) and controller.error:
            raise controller.error
    elapsed = time.perf_counter() - start
    cpu = controller.call(lambda trainer: time.thread_time()).result() - cpu_start
    controller.stop()
    controller.join()
    return steps / elapsed, steps / cpu, reads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--steps", type=int, default=1000, help="steps per round")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    config = CONFIG.replace(device=args.device)
    images = in_fresh_thread(synthetic_mnist)
    print(f"workload: MLP 784-128-64-10, batch {config.batch_size}, SGD, {config.device}; {args.steps} steps a round")
    in_fresh_thread(bare_loop, images, 200, config), nktui_loop(images, 200, config)  # warm up both paths
    rows = []
    for r in range(args.rounds):
        bare, bare_cpu = in_fresh_thread(bare_loop, images, args.steps, config)
        ours, ours_cpu, reads = nktui_loop(images, args.steps, config)
        rows.append((bare, ours, bare_cpu, ours_cpu))
        print(
            f"round {r + 1:2d}: bare {bare:7.1f} steps/s  nktui {ours:7.1f} steps/s  ratio {ours / bare:.3f}   "
            f"by CPU time: {ours_cpu / bare_cpu:.3f}   ({reads} reads)"
        )
    median = statistics.median
    print(f"median steps/s: bare {median(r[0] for r in rows):.1f}, nktui {median(r[1] for r in rows):.1f}")
    print(f"ratio by wall clock: {median(r[1] / r[0] for r in rows):.3f} (median of per-round ratios; target >= 0.97)")
    print(f"ratio by CPU time of the training thread: {median(r[3] / r[2] for r in rows):.3f}")
    if config.device.startswith("cuda"):
        check_no_sync(images, args.steps, config)


def check_no_sync(images, steps: int, config) -> None:
    import torch

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            rate, _, reads = nktui_loop(images, steps, config)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    print(f"sync check: {len(syncs)} host syncs in {steps} steps with {reads} reads ({rate:.1f} steps/s)")


if __name__ == "__main__":
    main()
