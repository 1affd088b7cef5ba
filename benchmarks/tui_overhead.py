"""How much does the full app slow training down, how fast does it start, and how many bytes does it send?

    python benchmarks/tui_overhead.py [--rounds 3] [--seconds 10] [--size 100x30]

Each round runs the real app (its real terminal driver) in a child process on a pseudo-terminal, training the
MLP 784-128-64-10 (batch 64, SGD, CPU) on MNIST-shaped synthetic data with the loss plot and the gradient pane
live, and, right before it, the bare PyTorch loop of benchmarks/common.py on the same model and data. It prints:
  - steps/s of both and their ratio (target >= 0.90),
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
def child(out_path: str, warmup: float, seconds: float) -> None:
    from common import CONFIG, synthetic_mnist

    from nktui.ui.app import NktuiApp

    config = CONFIG.replace(steps=10**9)
    app = NktuiApp(config, data=synthetic_mnist)  # made on the training thread: torch never runs on this one
    samples: dict[str, tuple[float, int]] = {}

    def sample(key: str) -> None:
        trainer = app.session.trainer
        samples[key] = (time.perf_counter(), trainer.step_count if trainer else 0)
        if key == "end":
            start_t, start_steps = samples["start"]
            end_t, end_steps = samples["end"]
            Path(out_path).write_text(json.dumps({"steps_per_sec": (end_steps - start_steps) / (end_t - start_t)}))
            app.call_later(app.action_quit)

    def begin() -> None:
        sample("start")
        app.set_timer(seconds, lambda: sample("end"))

    app.call_later(lambda: app.set_timer(warmup, begin))
    app.run()


# -- the parent: a pseudo-terminal that counts bytes -------------------------------------------------------------
def run_app_round(size: tuple[int, int], warmup: float, seconds: float) -> dict:
    out = tempfile.NamedTemporaryFile(suffix=".json", delete=False).name
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLORTERM": ""}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", out, "--warmup", str(warmup), "--seconds", str(seconds)],
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
            now = time.perf_counter() - start
            chunks.append((now, len(data)))
            if first_frame is None:
                seen += data
                if b"Config" in seen and b"Loss" in seen:  # the first frame with the panes drawn
                    first_frame = now
        elif proc.poll() is not None:
            break
    proc.wait()
    os.close(master)
    result = json.loads(Path(out).read_text()) if Path(out).stat().st_size else {}
    os.unlink(out)
    # steady state: from the end of the warm-up to just before quitting
    window = [(t, n) for t, n in chunks if first_frame and first_frame + warmup <= t <= first_frame + warmup + seconds]
    result["first_frame_s"] = first_frame
    result["bytes_per_sec"] = sum(n for _, n in window) / seconds
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds of training per round")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds after the first frame before measuring")
    parser.add_argument("--size", default="100x30", help="terminal size, COLUMNSxROWS")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.warmup, args.seconds)
        return
    from common import CONFIG, bare_loop, in_fresh_thread, synthetic_mnist

    columns, rows = (int(v) for v in args.size.split("x"))
    images = in_fresh_thread(synthetic_mnist)
    in_fresh_thread(bare_loop, images, 200, CONFIG)  # warm-up
    print(f"workload: MLP 784-128-64-10, batch 64, SGD, cpu; terminal {columns}x{rows}, {args.seconds:g} s a round")
    rows_out = []
    for r in range(args.rounds):
        bare = in_fresh_thread(bare_loop, images, 1500, CONFIG)[0]
        app = run_app_round((columns, rows), args.warmup, args.seconds)
        ratio = app.get("steps_per_sec", 0) / bare
        rows_out.append((bare, app, ratio))
        print(
            f"round {r + 1}: bare {bare:7.1f} steps/s   app {app.get('steps_per_sec', 0):7.1f} steps/s   "
            f"ratio {ratio:.3f}   first frame {app['first_frame_s']:.2f} s   {app['bytes_per_sec'] / 1024:.1f} KB/s"
        )
    median = statistics.median
    print(f"ratio app/bare: {median(r[2] for r in rows_out):.3f} (median; target >= 0.90)")
    print(f"first frame: {median(r[1]['first_frame_s'] for r in rows_out):.2f} s (median; target < 2 s)")
    print(f"terminal output: {median(r[1]['bytes_per_sec'] for r in rows_out) / 1024:.1f} KB/s (median; target <= 30)")


if __name__ == "__main__":
    main()
