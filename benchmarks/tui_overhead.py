"""How much does the full app slow training down, how fast does it start, and how many bytes does it send?

    python benchmarks/tui_overhead.py [--rounds 2] [--windows 10] [--window 2.0] [--size 100x30]

Each round runs the real app (its real terminal driver) in a child process on a pseudo-terminal, training the
MLP 784-128-64-10 (batch 64, SGD, CPU) on MNIST-shaped synthetic data with the loss plot and the gradient pane
live. Once it trains at full speed, the child alternates two kinds of window, `--window` seconds each:
  - app: the app's trainer trains while the UI draws, as a user sees it;
  - bare: the bare PyTorch loop of benchmarks/common.py (the same model, built the same way, and the same data)
    trains on the same thread, called through the controller, so it runs where the app's trainer runs, with the
    same CPU threads. Before it, the app's trainer waits while the UI draws what the app's window left it
    (up to `SETTLE` seconds); then the UI has nothing to draw (the UI thread's CPU time in both kinds of window is
    printed, so what the idle UI costs the bare loop is in plain view).
Why alternate: the wall clock of a shared VM wanders by a factor of 1.5 within seconds (the same loop, pinned to
one CPU, measured 460 to 900 steps/s in consecutive seconds), so runs one after the other compare noise. Pairs of
adjacent windows see the same machine; the ratio printed is the median of the pairs' ratios (target >= 0.90),
with the ratio of the training thread's CPU time beside it. Also printed:
  - the time from starting the process to the first frame on the terminal (target < 2 s),
  - the terminal bytes the app wrote per second in its windows (target <= 30 KB/s, for thin SSH links).
"""

from __future__ import annotations

import argparse
import asyncio
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
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# Between an app window and the next bare one, the app's trainer waits until the UI has drawn what it still had
# to, at most this long: a pane that redraws while training waits at most 3 s for its turn (nktui.ui.app.PLOT_PACE).
SETTLE = 3.2


# -- the child: the real app, on the terminal it was given ------------------------------------------------------
def child(out_path: str, warmup: float, windows: int, window: float, threads: int) -> None:
    from common import CONFIG, BareLoop, synthetic_mnist

    from nktui.ui.app import NktuiApp

    config = CONFIG.replace(steps=10**9, threads=threads)
    app = NktuiApp(config, data=synthetic_mnist)  # made on the training thread: torch never runs on this one
    bare: list[BareLoop] = []
    quiet = threading.Event()

    def build_bare(trainer) -> None:
        """On the app's training thread, like everything below: the bare loop, and its first steps (start-up)."""
        bare.append(BareLoop(synthetic_mnist(), config))
        bare[0].run(100)

    def bare_window(trainer) -> tuple[int, float, float]:
        """Hold the app's trainer at a step boundary until the UI has drawn what the app's window left it, then
        train the bare loop for a window."""
        quiet.wait()
        return bare[0].run_for(window)

    async def on_training_thread(fn):
        return await asyncio.wrap_future(app.session.run.controller.call(fn))

    async def caught_up() -> None:
        """Until the panes have drawn the newest data (they wait for their turn while training: nktui.ui.pacing),
        and the screen has rendered it."""
        give_up = time.monotonic() + SETTLE
        while time.monotonic() < give_up and (app._gradients_stale
                                               or app.loss_plot.drawn_version != app.session.history.version):
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.25)

    async def measure() -> None:
        session = app.session
        while session.run.controller.trainer is None or session.run.controller.trainer.step_count < 50:  # torch's import, the data: start-up
            await asyncio.sleep(0.1)
        await on_training_thread(build_bare)
        await asyncio.sleep(warmup)
        thread, ui = session.run.controller.thread, threading.main_thread()
        pairs = []
        for _ in range(windows):
            trainer = session.run.controller.trainer
            # CLOCK_MONOTONIC: the parent reads the same clock, to count the bytes written in the app's windows
            t0, n0, c0, u0 = time.monotonic(), trainer.step_count, thread_cpu_seconds(thread), thread_cpu_seconds(ui)
            await asyncio.sleep(window)
            t1, n1, c1, u1 = time.monotonic(), trainer.step_count, thread_cpu_seconds(thread), thread_cpu_seconds(ui)
            quiet.clear()
            future = asyncio.wrap_future(session.run.controller.call(bare_window))
            await caught_up()  # the panes draw what they still had to: a quiet UI for the bare loop
            u2, t2 = thread_cpu_seconds(ui), time.monotonic()
            quiet.set()
            steps, wall, cpu = await future
            u3, t3 = thread_cpu_seconds(ui), time.monotonic()
            pairs.append({"app": [t0, t1, n1 - n0, c1 - c0], "bare": [steps, wall, cpu],
                          "ui_cpu": [(u1 - u0) / (t1 - t0), (u3 - u2) / (t3 - t2)]})
        Path(out_path).write_text(json.dumps(pairs))
        app.exit()

    app.call_later(lambda: app.run_worker(measure(), exit_on_error=True))
    app.run()


def thread_cpu_seconds(thread) -> float:
    """CPU time of another thread of this process (Linux: /proc/self/task/TID/schedstat, in nanoseconds)."""
    return int(Path(f"/proc/self/task/{thread.native_id}/schedstat").read_text().split()[0]) / 1e9


# -- the parent: a pseudo-terminal that counts bytes -------------------------------------------------------------
def run_app_round(size: tuple[int, int], warmup: float, windows: int, window: float, threads: int) -> dict:
    out = tempfile.NamedTemporaryFile(suffix=".json", delete=False).name
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLORTERM": ""}
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", out, "--warmup", str(warmup), "--windows", str(windows),
         "--window", str(window), "--threads", str(threads)],
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
    text = Path(out).read_text()
    os.unlink(out)
    if not text:
        raise SystemExit(f"the app exited with {proc.returncode} before measuring; run it by hand to see why")
    pairs = json.loads(text)
    app_windows = [(p["app"][0], p["app"][1]) for p in pairs]
    written = sum(n for t, n in chunks if any(t0 <= t <= t1 for t0, t1 in app_windows))
    return {
        "pairs": pairs,
        "first_frame_s": first_frame,
        "bytes_per_sec": written / sum(t1 - t0 for t0, t1 in app_windows),
    }


def pair_ratios(pair: dict) -> tuple[float, float]:
    """(app steps/s over bare steps/s by the wall clock, the same by the training thread's CPU time)"""
    t0, t1, app_steps, app_cpu = pair["app"]
    bare_steps, bare_wall, bare_cpu = pair["bare"]
    return (app_steps / (t1 - t0)) / (bare_steps / bare_wall), (app_steps / app_cpu) / (bare_steps / bare_cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="app processes, one after the other")
    parser.add_argument("--windows", type=int, default=10, help="pairs of windows (app, bare) per round")
    parser.add_argument("--window", type=float, default=2.0, help="seconds a window")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of full-speed training before measuring")
    parser.add_argument("--size", default="100x30", help="terminal size, COLUMNSxROWS")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads of the app's trainer and of the bare loop (0: the app's default, one "
                             "fewer than the cores)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.warmup, args.windows, args.window, args.threads)
        return
    from nktui.ui.session import app_threads

    threads = args.threads or app_threads()
    columns, rows = (int(v) for v in args.size.split("x"))
    print(f"workload: MLP 784-128-64-10, batch 64, SGD, cpu; terminal {columns}x{rows}; {args.windows} pairs of "
          f"{args.window:g} s windows a round; {threads} CPU thread(s) of {os.cpu_count()}")
    median = statistics.median
    rounds, all_pairs = [], []
    for r in range(args.rounds):
        result = run_app_round((columns, rows), args.warmup, args.windows, args.window, threads)
        ratios = [pair_ratios(p) for p in result["pairs"]]
        all_pairs += ratios
        rounds.append(result)
        app_rate = median(p["app"][2] / (p["app"][1] - p["app"][0]) for p in result["pairs"])
        bare_rate = median(p["bare"][0] / p["bare"][1] for p in result["pairs"])
        print(
            f"round {r + 1}: bare {bare_rate:6.1f} steps/s, app {app_rate:6.1f} (medians of the windows)   "
            f"ratio {median(w for w, _ in ratios):.3f} by the wall clock, {median(c for _, c in ratios):.3f} by CPU "
            f"time (medians of {len(ratios)} pairs; single pairs {min(w for w, _ in ratios):.2f} to "
            f"{max(w for w, _ in ratios):.2f})   first frame {result['first_frame_s']:.2f} s   "
            f"{result['bytes_per_sec'] / 1024:.1f} KB/s"
        )
        ui_app, ui_bare = (median(p["ui_cpu"][i] for p in result["pairs"]) for i in (0, 1))
        print(f"         the UI thread's CPU: {ui_app:.1%} of a core in the app's windows, {ui_bare:.1%} in the bare "
              "loop's (the app idle: nothing new to draw)")
    print(f"ratio app/bare: {median(w for w, _ in all_pairs):.3f} by the wall clock, "
          f"{median(c for _, c in all_pairs):.3f} by the training thread's CPU time (medians of {len(all_pairs)} "
          "pairs; target >= 0.90)")
    print(f"first frame: {median(r['first_frame_s'] for r in rounds):.2f} s (median; target < 2 s)")
    print(f"terminal output: {median(r['bytes_per_sec'] for r in rounds) / 1024:.1f} KB/s (median; target <= 30)")


if __name__ == "__main__":
    main()
