"""Regenerate the README's screenshots: `python assets/screenshots.py`.

Needs rsvg-convert and the font Textual's SVGs name (Debian: `apt install librsvg2-bin fonts-firacode`).

Each picture is the real app driven by Textual's Pilot at 100x30, on the bundled digits, on the CPU, saved as SVG by
`save_screenshot()` and turned into PNG by rsvg-convert. The scenes:

- nktui.png: the MLP after a few hundred steps, paused, then three single steps (`n`);
- fault.png: the README's demo (`--model mlp --lr 50`), paused by a watchpoint just before the step where the loss
  exploded;
- fault-trace.png: `t` on that step, phase 3 (backward);
- trace.png: the trace of one step, phase 4 (update);
- evaluation.png: `e` after a few hundred steps;
- landscape.png: `v` on the linear model after a few hundred steps, with the descent path;
- attach.png: `nktui attach` on a run `nktui train` started (its own process), paused, with `q`'s question: stop
  the run or leave it training.
"""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
import time
from pathlib import Path

from nktui.training import RunConfig, RunState
from nktui.ui.app import NktuiApp

ASSETS = Path(__file__).resolve().parent
SIZE = (100, 30)


async def until(pilot, predicate, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waiting for {what}")
        await pilot.pause(0.05)


async def trained(pilot, steps: int) -> None:
    """Let the run train to about `steps`, pause it, and let the panes catch up."""
    app = pilot.app
    await until(pilot, lambda: app.session.state is RunState.RUNNING, "the run to start")
    await until(pilot, lambda: app.session.step_count >= steps, f"step {steps}", 120)
    await pilot.press("space")
    await until(pilot, lambda: app.session.state is RunState.PAUSED, "the pause")
    for _ in range(3):
        step = app.session.step_count
        await pilot.press("n")
        await until(pilot, lambda: app.gradient_pane.shown_step == step + 1, "the single step")
    await pilot.pause(1.0)  # the plot's next redraw
    app.clear_notifications()
    await pilot.pause(0.3)


def png(svg: str, name: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "shot.svg"
        # rsvg-convert drops the width of a leading non-breaking space in a span: plain spaces, kept as they are
        source.write_text(svg.replace("&#160;", " ").replace("<svg ", '<svg xml:space="preserve" ', 1))
        subprocess.run(["rsvg-convert", str(source), "-o", str(ASSETS / name)], check=True)
    print("wrote", ASSETS / name)


async def fault() -> None:
    app = NktuiApp(RunConfig(seed=0, device="cpu", model="mlp", lr=50.0, steps=10**6), paused=False)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.session.watch_hit is not None and app.error_line.display, "the watchpoint")
        await pilot.pause(1.5)
        png(app.export_screenshot(), "fault.png")
        app.clear_notifications()
        await pilot.press("t")
        await until(pilot, lambda: getattr(app.screen, "trace", None) is not None, "the trace")
        for _ in range(2):  # forward, softmax and loss, backward
            await pilot.press("t")
        await pilot.pause(0.5)
        png(app.export_screenshot(), "fault-trace.png")
    app.session.stop(5.0)


async def main_screen() -> None:
    app = NktuiApp(RunConfig(seed=0, device="cpu", model="mlp", steps=10**6), paused=False)
    async with app.run_test(size=SIZE) as pilot:
        await trained(pilot, 400)
        png(app.export_screenshot(), "nktui.png")
        await pilot.press("t")
        await until(pilot, lambda: getattr(app.screen, "trace", None) is not None, "the trace")
        for _ in range(3):  # forward, softmax and loss, backward, update
            await pilot.press("t")
        await pilot.pause(0.5)
        png(app.export_screenshot(), "trace.png")
        await pilot.press("escape")
        await pilot.press("e")
        await until(pilot, lambda: getattr(app.screen, "evaluation", None) is not None, "the evaluation")
        await pilot.pause(0.5)
        png(app.export_screenshot(), "evaluation.png")
    app.session.stop(5.0)


async def landscape() -> None:
    app = NktuiApp(RunConfig(seed=0, device="cpu", steps=10**6), paused=False)
    async with app.run_test(size=SIZE) as pilot:
        await trained(pilot, 300)
        await pilot.press("v")
        await until(pilot, lambda: getattr(app.screen, "surface", None) is not None, "the surface")
        await pilot.pause(1.0)
        png(app.export_screenshot(), "landscape.png")
    app.session.stop(5.0)


async def attach() -> None:
    import os
    import signal
    import sys

    from nktui.host.remote import RemoteRunClient

    with tempfile.TemporaryDirectory() as folder:
        run_dir = Path(folder) / "runs" / "demo"
        train = subprocess.Popen([sys.executable, "-m", "nktui", "train", "--model", "mlp", "--seed", "0", "--device",
                                  "cpu", "--steps", "1000000", "--run-dir", "runs/demo"], cwd=folder,
                                 stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while not (run_dir / "nktui.sock").exists():
                if time.monotonic() > deadline:
                    raise TimeoutError("nktui train's socket")
                time.sleep(0.1)
            client = RemoteRunClient.connect(run_dir / "nktui.sock")
            client.keeper.run_dir = Path("runs/demo")  # (as `nktui attach` from that folder shows it)
            app = NktuiApp(client.config, run_dir=Path("runs/demo"), run_client=lambda c, p: client, attached=True)
            async with app.run_test(size=SIZE) as pilot:
                await trained(pilot, 600)
                await pilot.press("q")
                await pilot.pause(0.5)
                png(app.export_screenshot(), "attach.png")
                await pilot.press("s")
                await until(pilot, lambda: not app.is_running, "the stop")
            train.wait(timeout=60)
        finally:
            if train.poll() is None:
                os.kill(train.pid, signal.SIGKILL)


if __name__ == "__main__":
    asyncio.run(attach())
    asyncio.run(fault())
    asyncio.run(main_screen())
    asyncio.run(landscape())
