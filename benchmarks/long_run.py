"""Does memory stay flat over a long run? A million steps, then resident memory before and after.

    python benchmarks/long_run.py [--steps 1000000] [--batch-size 1]     # the engine and the app's reader
    python benchmarks/long_run.py --app 180                              # the whole app, headless, for 180 s

Engine mode trains the article's linear model on the bundled digits with a tiny batch (so steps are as many and
as cheap as they get) for `--steps` steps on the training thread, read the way the app reads it: a `Session`
(the app's reader, without Textual) polls five times a second, asks for per-layer statistics each time, feeds
the plot history and the scrub buffer, and writes metrics.jsonl, with rewind states every 32 steps and last.pt
every 100,000 steps. App mode runs the real `NktuiApp` (Textual's headless driver, 100x30) training the same
way for `--app` seconds: every widget updating.

Both print resident memory (VmRSS from /proc/self/status) as they go, and the growth from the first sample after
warm-up to the end. Target: growth < 100 MB. Every buffer is bounded (the record buffer, the plot history,
the scrub buffer, the rewind states, the trajectory), so what remains is allocator noise.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # a tiny model: one intra-op thread is fastest

from nktui.training import RunConfig, RunState  # noqa: E402
from nktui.run.checkpoint_keeper import RunKeeper  # noqa: E402

POLL_SECONDS = 0.2  # the app's tick
WARMUP_STEPS = 20_000


def rss_mb() -> float:
    """Resident memory of this process now, in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # (peak, where /proc is missing)


def config(steps: int, batch_size: int, run_dir: Path) -> RunConfig:
    return RunConfig(dataset="digits", model="linear", batch_size=batch_size, steps=steps, device="cpu",
                     checkpoint_every=100_000, run_dir=str(run_dir), seed=0, watch=False)  # (nobody resumes a pause)


def engine(steps: int, batch_size: int) -> None:
    from nktui.ui.session import Session  # plain Python: the app's reader without Textual

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        cfg = config(steps, batch_size, run_dir)
        session = Session(cfg, keeper=RunKeeper(run_dir, cfg))
        print(f"start: {rss_mb():.1f} MB before the trainer exists", flush=True)
        started = time.perf_counter()
        baseline = None
        next_report = 0
        while True:
            session.poll()
            trainer = session.run.controller.trainer
            step = trainer.step_count if trainer is not None else 0
            if baseline is None and step >= WARMUP_STEPS:
                baseline = rss_mb()
                print(f"after warm-up (step {step:,}): {baseline:.1f} MB", flush=True)
            if step >= next_report:
                rate = step / (time.perf_counter() - started)
                points = len(session.history.train_loss)
                print(f"step {step:>9,}  {rss_mb():7.1f} MB  {rate:,.0f} steps/s  history {points} points  "
                      f"scrub {len(session.observed)}  rewind {len(trainer.rewinds) if trainer else 0}", flush=True)
                next_report += 100_000
            if session.state in (RunState.FINISHED, RunState.FAILED):
                break
            time.sleep(POLL_SECONDS)
        session.poll()
        end = rss_mb()
        line = session.close("finished")
        wall = time.perf_counter() - started
        rows = sum(1 for _ in open(run_dir / "metrics.jsonl"))
        print(f"end (step {session.run.controller.trainer.step_count:,}, {wall:.0f} s, {rows:,} metrics rows): {end:.1f} MB")
        print(f"growth after warm-up: {end - (baseline or end):+.1f} MB (target < 100 MB)")
        print(line)


def app(seconds: float, batch_size: int) -> None:
    from nktui.ui.app import NktuiApp

    async def run() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            nktui_app = NktuiApp(config(10**9, batch_size, Path(tmp) / "run"), run_dir=Path(tmp) / "run")
            async with nktui_app.run_test(size=(100, 30), notifications=True) as pilot:
                started = time.monotonic()
                samples = []
                while time.monotonic() - started < seconds:
                    await pilot.pause(10.0 if samples else 5.0)
                    trainer = nktui_app.session.run.controller.trainer
                    samples.append((time.monotonic() - started, trainer.step_count if trainer else 0, rss_mb()))
                    t, step, mb = samples[-1]
                    print(f"{t:5.0f} s  step {step:>9,}  {mb:7.1f} MB", flush=True)
                await pilot.press("q")
            first, last = samples[1] if len(samples) > 1 else samples[0], samples[-1]
            print(f"growth from {first[0]:.0f} s to {last[0]:.0f} s ({last[1] - first[1]:,} steps): "
                  f"{last[2] - first[2]:+.1f} MB (target < 100 MB)")

    asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--app", type=float, default=0, metavar="SECONDS", help="run the whole app this long instead")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, pid {os.getpid()}", flush=True)
    if args.app:
        app(args.app, args.batch_size)
    else:
        engine(args.steps, args.batch_size)


if __name__ == "__main__":
    main()
