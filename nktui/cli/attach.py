"""`nktui attach [RUN]` and `nktui ls [DIR]`: the runs that live in processes of their own.

`nktui attach` opens the app on a live run: RUN is its run directory; without it, the newest live run under
./runs. `nktui ls` lists the live runs under DIR (default ./runs): folder, pid, state, step of limit, steps/s,
LR, start time and clients attached; the socket a dead run left behind is removed and reported. Neither imports
torch; `ls` imports no Textual either.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..messages import EXIT_BAD_INPUT, EXIT_OK, print_error, print_warning
from .args import ArgumentParser


def attach_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="nktui attach", description="Open the app on a run that is already going on "
                            "(started by nktui or nktui train). d detaches again and leaves it running.")
    parser.add_argument("run", nargs="?", default=None, metavar="RUN",
                        help="the run's directory (default: the newest live run under ./runs)")
    return parser


def ls_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="nktui ls", description="List the live runs: the ones nktui attach can open.")
    parser.add_argument("root", nargs="?", default="runs", metavar="DIR",
                        help="where to look: run directories in it, one or two levels down (default: ./runs)")
    return parser


def attach_main(argv: list[str]) -> int:
    try:
        args = attach_parser().parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    from ..host.live_runs import find_run
    from ..host.remote import RemoteRunClient
    from ..protocol import NktuiError
    from ..ui.app import run_attached
    from ..ui.attached import catch_early_signals

    early = catch_early_signals()  # a hang-up from here on detaches (once the app is up)
    try:
        try:
            client = RemoteRunClient.connect(find_run(args.run))
        except NktuiError as exc:
            print_error(exc)
            return EXIT_BAD_INPUT
        return run_attached(client, early)
    finally:
        early.restore()


def ls_main(argv: list[str]) -> int:
    try:
        args = ls_parser().parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    from ..host.live_runs import live_runs

    root = Path(args.root)
    if not root.is_dir():
        print_error(f"{root} is not a folder (nktui ls DIR looks for runs in DIR)")
        return EXIT_BAD_INPUT
    runs, notes = live_runs(root)
    for note in notes:
        print_warning(note)
    if not runs:
        print(f"no live runs under {root}/")
        return EXIT_OK
    rows = [("RUN", "PID", "STATE", "STEP", "STEPS/S", "LR", "STARTED", "CLIENTS")]
    for run in runs:
        rows.append(describe(run))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return EXIT_OK


def describe(run) -> tuple[str, ...]:
    status, welcome = run.status, run.welcome
    from ..protocol.wire import from_wire
    from ..render.format import lr_text

    info = status.get("info")
    limit = from_wire(info).step_limit if info else None
    step = status.get("step_count", 0)
    rate = status.get("steps_per_sec")
    config = from_wire(welcome["config"])
    lr = status.get("lr", config.lr)
    mode = " (train)" if welcome.get("mode") == "train" else ""
    return (
        str(run.run_dir), str(welcome.get("pid", "?")), str(status.get("state", "?")) + mode,
        f"{step}/{limit}" if limit else str(step), f"{rate:.0f}" if rate else "-", lr_text(lr),
        time.strftime("%Y-%m-%d %H:%M", time.localtime(run.started)), str(status.get("clients", 0)),
    )
