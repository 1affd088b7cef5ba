"""What an attached app costs a run in its own process, and how quickly it follows (issue: the run in its own process).

    python benchmarks/attach_overhead.py [--pairs 6] [--window 5] [--history 1000000]

A run process (`nktui _host`, as `nktui` starts it) trains the MLP 784-128-64-10 (batch 64, SGD, CPU) on
MNIST-shaped synthetic data (benchmarks/common.py, written as MNIST's idx files, so the run reads it as `--dataset
mnist`). Then, in one run, it alternates two kinds of window, `--window` seconds each:
  - detached: nobody attached (only a probe reads the step counter at the window's ends);
  - attached: the real app, headless at 100x30, in a child process attached over the socket, drawing the plot and
    the gradient pane as the run trains.
Adjacent windows see the same machine (this VM's speed wanders by 1.5x within seconds); the ratio printed is the
median over the pairs of attached steps/s over detached steps/s (target >= 0.97), each pair's order alternating.
Also printed:
  - the bytes a second the socket carried to the attached app (target <= 50 KB/s);
  - how long after the run process sent a step the app drew it on the plot (p50, p95, max; the step itself was
    made at most one run tick, 0.05 s, before it was sent; target: within 0.25 s of the step);
  - pause latency: from the command leaving a client to the run's answer (the training thread stops at its next
    step boundary) and to the client seeing the paused state;
  - attaching to a run with `--history` steps of history and a full scrub buffer: from connecting to the app's
    first frame with the plot drawn (target < 1 s), over the real socket, with a stand-in run process (forked,
    holding that history).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

SIZE = (100, 30)


def write_idx(folder: Path) -> None:
    from common import synthetic_mnist

    images = synthetic_mnist()
    raw = folder / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    pixels = images.pixels.squeeze(1).numpy()
    labels = images.labels.to(dtype=__import__("torch").uint8).numpy()
    for prefix, (px, lb) in {"train": (pixels, labels), "t10k": (pixels[:100], labels[:100])}.items():
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, *px.shape) + px.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, len(lb)) + lb.tobytes())


def run_flags(data: Path, run_dir: Path) -> list[str]:
    return ["--dataset", "mnist", "--data-dir", str(data), "--no-download", "--model", "mlp", "--hidden", "128,64",
            "--optimizer", "sgd", "--lr", "0.05", "--batch-size", "64", "--eval-every", "0", "--seed", "0",
            "--device", "cpu", "--steps", "100000000", "--run-dir", str(run_dir)]


# -- the attached app, in a child process --------------------------------------------------------------------------
def app_child(socket_path: str, out: str) -> None:
    """The app attached headless; on SIGTERM it detaches and writes what it measured to `out`."""
    from nktui.host.remote import RemoteRunClient
    from nktui.ui.app import NktuiApp
    from nktui.ui.widgets.loss_plot import LossPlot

    client = RemoteRunClient.connect(socket_path)
    latencies: list[float] = []
    original = LossPlot.draw

    def draw(self, history, cursor_step=None):
        news = client.last_news
        last = history.train_loss.last()
        if news is not None and news[0] and last is not None and any(getattr(r, "step", None) == last[0]
                                                                    for r in news[2]):
            latencies.append(time.time() - news[0])
        return original(self, history, cursor_step)

    LossPlot.draw = draw
    app = NktuiApp(client.config, run_dir=client.run_dir, run_client=lambda c, p: client, attached=True,
                   handle_signals=True)
    started = {"bytes": 0, "time": 0.0}

    def mark() -> None:
        started["bytes"], started["time"] = client.received_bytes, time.monotonic()

    threading.Timer(1.0, mark).start()  # the snapshot on attaching is not steady state
    app.run(headless=True, size=SIZE)
    seconds = time.monotonic() - started["time"]
    Path(out).write_text(json.dumps({"latencies": latencies, "bytes_per_s": (client.received_bytes
                                     - started["bytes"]) / seconds if started["time"] else None}))


# -- the windows ---------------------------------------------------------------------------------------------------
def steps_now(socket_path: Path) -> tuple[float, int]:
    from nktui.host.remote import probe

    return time.monotonic(), int(probe(socket_path)["status"]["step_count"])


def window(socket_path: Path, seconds: float, attached: bool, out: Path) -> tuple[float, dict | None]:
    child = None
    if attached:
        child = subprocess.Popen([sys.executable, __file__, "--app-child", str(socket_path), str(out)])
        from nktui.host.remote import probe

        while int(probe(socket_path)["status"].get("clients", 0)) < 1:
            time.sleep(0.05)
        time.sleep(1.5)  # the app's start and the snapshot: not measured
    t0, s0 = steps_now(socket_path)
    time.sleep(seconds)
    t1, s1 = steps_now(socket_path)
    measured = None
    if child is not None:
        child.send_signal(signal.SIGTERM)  # an attached app detaches on SIGTERM
        child.wait(timeout=30)
        measured = json.loads(out.read_text()) if out.exists() else None
        from nktui.host.remote import probe

        while int(probe(socket_path)["status"].get("clients", 0)) > 0:
            time.sleep(0.05)
    return (s1 - s0) / (t1 - t0), measured


def pause_latency(socket_path: Path, rounds: int = 10) -> tuple[list[float], list[float]]:
    from nktui.host.remote import RemoteRunClient
    from nktui.protocol import RunState
    from nktui.protocol.commands import Pause

    client = RemoteRunClient.connect(socket_path)
    answered, seen = [], []
    for _ in range(rounds):
        time.sleep(0.5)
        start = time.monotonic()
        client.submit(Pause()).result(5)
        answered.append(time.monotonic() - start)
        while client.state is not RunState.PAUSED:
            time.sleep(0.001)
        seen.append(time.monotonic() - start)
        client.resume()
        while client.state is RunState.PAUSED:
            time.sleep(0.001)
    client.detach()
    return answered, seen


# -- attaching to a long history -----------------------------------------------------------------------------------
def attach_to_history(steps: int) -> dict:
    import asyncio

    from nktui.host.remote import RemoteRunClient
    from nktui.host.run_host import RunHost
    from nktui.host.server import SOCKET_FILE
    from nktui.protocol import RunConfig, RunState, StepRecord
    from nktui.protocol.records import Histogram, LayerStats
    from nktui.protocol.run_info import DataSummary, RunInfo
    from nktui.ui.app import NktuiApp

    layers = (("fc1.weight", (128, 784)), ("fc1.bias", (128,)), ("fc2.weight", (64, 128)), ("fc2.bias", (64,)),
              ("out.weight", (10, 64)), ("out.bias", (10,)))
    info = RunInfo(tuple(n for n, _ in layers), tuple(s for _, s in layers), tuple(n for n, _ in layers),
                   tuple(s for _, s in layers), steps * 2, "cpu", "cpu", "cpu",
                   DataSummary("synthetic", (1, 28, 28), tuple("0123456789"), 60000, 0, 937))

    class Controller:  # a stand-in for a run that has made `steps` steps, paused
        state, step_count, pause_requested, gpu, error, error_traceback = RunState.PAUSED, steps, False, None, None, ""

        def __init__(self) -> None:
            self.info = info

        def all_progress(self):
            return []

    class Driver:
        config, keeper, controller, checkpoint_error = RunConfig(), None, Controller(), None

        def __init__(self, run_dir: Path) -> None:
            self.run_dir = run_dir

    folder = Path(tempfile.mkdtemp(dir="/tmp"))
    host = RunHost(Driver(folder))
    histogram = Histogram(-1.0, 1.0, tuple(range(16)))
    for start in range(1, steps + 1, 100_000):
        batch = []
        for step in range(start, min(start + 100_000, steps + 1)):
            stats = {}
            if steps - step < 1000:  # the scrub buffer: the last 1000 steps measured
                stats = {n: LayerStats(n, s, 0.1, 0.0, 0.01, 0.5, 3.0, 1e-3, 0, histogram) for n, s in layers}
            batch.append(StepRecord(step, step // 937, 2.3 / (1 + step / 1000), 0.5, 0.05, None, stats))
        host.mirror.add(batch)
    frame_bytes = len(host.snapshot_frame())
    ready, stop = multiprocessing.Event(), multiprocessing.Event()

    def serve() -> None:  # the stand-in run process (forked: the mirror is built once)
        host.start()
        ready.set()
        while not stop.is_set():
            host.tick([])
            time.sleep(0.05)
        host.server.close()

    server = multiprocessing.get_context("fork").Process(target=serve, daemon=True)
    server.start()
    ready.wait(60)

    async def first_frame() -> float:
        start = time.monotonic()
        client = RemoteRunClient.connect(folder / SOCKET_FILE)
        app = NktuiApp(client.config, run_dir=folder, run_client=lambda c, p: client, attached=True)
        async with app.run_test(size=SIZE) as pilot:
            while not (app.session is not None and app.session.history.train_loss.count >= steps
                       and app.loss_plot.drawn_version == app.session.history.version
                       and app.session.shown_record is not None):
                await pilot.pause(0.01)
            await pilot.pause()  # the frame itself
            elapsed = time.monotonic() - start
            while len(app.session.observed) < min(steps, 1000):  # the rest of the scrub buffer
                await pilot.pause(0.01)
            scrub = time.monotonic() - start
            client.detach()
            app.session.closed = True
        return elapsed, scrub

    elapsed, scrub = asyncio.run(first_frame())
    stop.set()
    server.join(10)
    return {"seconds": elapsed, "scrub_seconds": scrub, "snapshot_bytes": frame_bytes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--window", type=float, default=5.0)
    parser.add_argument("--history", type=int, default=1_000_000)
    parser.add_argument("--app-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.app_child:
        app_child(*args.app_child)
        return
    from nktui.host.server import SOCKET_FILE
    from nktui.host.spawn import start_run_process

    work = Path(tempfile.mkdtemp(prefix="nktui-attach-bench-"))
    write_idx(work / "data")
    run_dir, pid = start_run_process(run_flags(work / "data", work / "run"))
    socket_path = run_dir / SOCKET_FILE
    try:
        time.sleep(8)  # built and at full speed
        ratios, rates, latencies, bandwidth = [], {"attached": [], "detached": []}, [], []
        for pair in range(args.pairs):
            order = (False, True) if pair % 2 == 0 else (True, False)
            result = {}
            for attached in order:
                out = work / f"child-{pair}.json"
                rate, measured = window(socket_path, args.window, attached, out)
                result[attached] = rate
                rates["attached" if attached else "detached"].append(rate)
                if measured:
                    latencies += measured["latencies"]
                    if measured["bytes_per_s"]:
                        bandwidth.append(measured["bytes_per_s"])
            ratios.append(result[True] / result[False])
            print(f"pair {pair + 1}: detached {result[False]:.0f} steps/s, attached {result[True]:.0f} steps/s, "
                  f"ratio {ratios[-1]:.3f}", flush=True)
        answered, seen = pause_latency(socket_path)
    finally:
        os.kill(pid, signal.SIGTERM)
    history = attach_to_history(args.history)
    print(f"\nthroughput attached/detached: median {statistics.median(ratios):.3f} over {len(ratios)} pairs "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f}); target >= 0.97")
    if bandwidth:
        print(f"socket to the app: median {statistics.median(bandwidth) / 1000:.1f} KB/s "
              f"(max {max(bandwidth) / 1000:.1f}); target <= 50 KB/s")
    if latencies:
        q = statistics.quantiles(latencies, n=20)
        print(f"step sent -> drawn on the plot: p50 {statistics.median(latencies) * 1000:.0f} ms, p95 "
              f"{q[-1] * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms over {len(latencies)} draws (+ <= 50 ms "
              "from the step to its sending); target: within 250 ms of the step")
    print(f"pause: answered in median {statistics.median(answered) * 1000:.1f} ms (max {max(answered) * 1000:.1f}), "
          f"seen paused by the client in median {statistics.median(seen) * 1000:.0f} ms (max "
          f"{max(seen) * 1000:.0f}); target: in effect within 100 ms")
    print(f"attach to {args.history:,} steps of history: first full frame in {history['seconds']:.2f} s "
          f"(first frame {history['snapshot_bytes'] / 1e6:.2f} MB), the whole scrub buffer in "
          f"{history['scrub_seconds']:.2f} s; target < 1 s")


if __name__ == "__main__":
    main()
