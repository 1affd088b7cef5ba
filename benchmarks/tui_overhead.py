"""How much does the full app slow training down, how fast does it start, and how many bytes does it send?

    python benchmarks/tui_overhead.py [--rounds 3] [--seconds 10] [--size 100x30]

Each round runs the real app (its real terminal driver) in a child process on a pseudo-terminal, training the
MLP 784-128-64-10 (batch 64, SGD, CPU) on MNIST-shaped synthetic data with the loss plot and the gradient pane
live, and, right before it, the bare PyTorch loop of benchmarks/common.py on the same model and data. It prints:
  - steps/s of both and their ratio (target >= 0.90): the bare loop on as many CPU threads as the app's trainer
    (one fewer than the cores: the UI keeps one), and, for the cost of that choice, on all of them,
  - the time from starting the process to the first frame on the terminal (target < 2 s),
  - the terminal bytes the app wrote per second while training (target <= 30 KB/s, for thin SSH links).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import select
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


# -- the child: the real app, on the terminal it was given ------------------------------------------------------
def child(out_path: str, warmup: float, seconds: float, threads: int) -> None:
    from common import CONFIG, synthetic_mnist

    from nktui.ui.app import NktuiApp

    config = CONFIG.replace(steps=10**9, threads=threads)
    app = NktuiApp(config, data=synthetic_mnist)  # made on the training thread: torch never runs on this one
    samples: dict[str, tuple[float, int]] = {}

    def sample(key: str) -> None:
        trainer = app.session.trainer
        # CLOCK_MONOTONIC: the parent reads the same clock; and the training thread's CPU time, which neither the
        # other processes of a busy machine nor the hypervisor's steal change
        samples[key] = (time.monotonic(), trainer.step_count, thread_cpu_seconds(app.session.controller.thread))
        if key == "end":
            (start_t, start_steps, start_cpu), (end_t, end_steps, end_cpu) = samples["start"], samples["end"]
            steps = end_steps - start_steps
            result = {"steps_per_sec": steps / (end_t - start_t), "start": start_t, "end": end_t,
                      "steps_per_cpu_sec": steps / (end_cpu - start_cpu)}
            Path(out_path).write_text(json.dumps(result))
            app.call_later(app.action_quit)

    def begin() -> None:
        sample("start")
        app.set_timer(seconds, lambda: sample("end"))

    def when_training() -> None:
        """Measure from `warmup` seconds after the trainer's 50th step: torch's import, the data and the model's
        first steps are start-up, not the steady state."""
        trainer = app.session.trainer if app.session is not None else None
        if trainer is None or trainer.step_count < 50:
            app.set_timer(0.1, when_training)
        else:
            app.set_timer(warmup, begin)

    app.call_later(when_training)
    app.run()


def cpu_text(ratio: float) -> str:
    """The CPU-time ratio, which means something only for one CPU thread (more threads' work is not in its time)."""
    return "n/a (more than one thread)" if ratio != ratio else f"{ratio:.3f}"


def thread_cpu_seconds(thread) -> float:
    """CPU time of another thread of this process (Linux: /proc/self/task/TID/schedstat, in nanoseconds)."""
    return int(Path(f"/proc/self/task/{thread.native_id}/schedstat").read_text().split()[0]) / 1e9


# -- the parent: a pseudo-terminal that counts bytes -------------------------------------------------------------
def run_app_round(size: tuple[int, int], warmup: float, seconds: float, threads: int) -> dict:
    out = tempfile.NamedTemporaryFile(suffix=".json", delete=False).name
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLORTERM": ""}
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", out, "--warmup", str(warmup), "--seconds", str(seconds),
         "--threads", str(threads)],
        stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True, start_new_session=True,
    )
    os.close(slave)
    first_frame = None
    chunks: list[tuple[float, int]] = []
    seen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            now = time.monotonic()
            chunks.append((now, len(data)))
            if first_frame is None:
                seen += data
                if b"Config" in seen and b"Loss" in seen:  # the first frame with the panes drawn
                    first_frame = now - start
        elif proc.poll() is not None:
            break
    proc.wait()
    os.close(master)
    result = json.loads(Path(out).read_text()) if Path(out).stat().st_size else {}
    os.unlink(out)
    # steady state: the child's measured window, training at full speed, before quitting
    window = [n for t, n in chunks if result["start"] <= t <= result["end"]]
    result["first_frame_s"] = first_frame
    result["bytes_per_sec"] = sum(window) / (result["end"] - result["start"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds of training per round")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of full-speed training before measuring")
    parser.add_argument("--size", default="100x30", help="terminal size, COLUMNSxROWS")
    parser.add_argument("--threads", type=int, default=0,
                        help="the app's CPU threads, and the bare loop's (0: the app's default, one fewer than "
                             "the cores)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.warmup, args.seconds, args.threads)
        return
    import torch
    from common import CONFIG, bare_loop, in_fresh_thread, synthetic_mnist

    from nktui.ui.session import app_threads

    threads = args.threads or app_threads()
    cores = torch.get_num_threads()  # PyTorch's default: one per core

    def bare(num_threads: int) -> tuple[float, float]:
        """(steps/s by the wall clock, steps per CPU second of the training thread)"""

        def loop() -> tuple[float, float]:
            torch.set_num_threads(num_threads)
            return bare_loop(images, 1500, CONFIG)

        return in_fresh_thread(loop)

    columns, rows = (int(v) for v in args.size.split("x"))
    images = in_fresh_thread(synthetic_mnist)
    bare(threads)  # warm-up
    print(f"workload: MLP 784-128-64-10, batch 64, SGD, cpu; terminal {columns}x{rows}, {args.seconds:g} s a round; "
          f"the app trains on {threads} CPU thread(s) of {cores}")
    rows_out = []
    for r in range(args.rounds):
        same, same_cpu = bare(threads)
        app = run_app_round((columns, rows), args.warmup, args.seconds, threads)
        full = bare(cores)[0] if cores != threads else same
        steps = app.get("steps_per_sec", 0)
        by_cpu = app["steps_per_cpu_sec"] / same_cpu if threads == 1 else float("nan")  # one thread: all its work
        rows_out.append((app, steps / same, steps / full, by_cpu))
        print(
            f"round {r + 1}: bare {same:6.1f} steps/s ({threads} thr) {full:6.1f} ({cores} thr)   "
            f"app {steps:6.1f} steps/s   ratio {steps / same:.3f} ({steps / full:.3f})   "
            f"by CPU time {cpu_text(by_cpu)}   "
            f"first frame {app['first_frame_s']:.2f} s   {app['bytes_per_sec'] / 1024:.1f} KB/s"
        )
    median = statistics.median
    print(f"ratio app/bare at the same {threads} thread(s): {median(r[1] for r in rows_out):.3f} by the wall clock, "
          f"{cpu_text(median(r[3] for r in rows_out))} by the training thread's CPU time (medians; target >= 0.90)")
    if cores != threads:
        print(f"ratio app/bare at {cores} threads, PyTorch's default: {median(r[2] for r in rows_out):.3f} (median; "
              "the app leaves a core to the UI: see --threads)")
    print(f"first frame: {median(r[0]['first_frame_s'] for r in rows_out):.2f} s (median; target < 2 s)")
    print(f"terminal output: {median(r[0]['bytes_per_sec'] for r in rows_out) / 1024:.1f} KB/s (median; target <= 30)")

if __name__ == "__main__":
    main()
