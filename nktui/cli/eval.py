"""`nktui eval PATH`: evaluate a checkpoint's weights without the app and print the evaluation screen's tables.

The checkpoint is either a state from `nktui.engine.state.capture_state` saved with `torch.save`, or a run's
`last.pt` (`nktui.run.rundir`). Its config rebuilds the run's data set (the same seeded split) and model, the
weights are loaded, and `evaluate_in_detail` runs: the code the app's evaluation screen runs. Printed: the summary,
the confusion matrix, the per-class table, and the most confidently wrong examples (as pictures on a terminal, one
line each otherwise).

`main(argv)` takes the arguments after `eval`. Exit codes: 0 done; 2 bad input (`nktui: error: <what and how to
fix it>` on stderr, no traceback). Imports no Textual.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from ..messages import EXIT_BAD_INPUT, EXIT_OK, print_error
from ..protocol.config import SETTINGS
from .args import ArgumentParser


def make_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="nktui eval",
        description="Evaluate a checkpoint (a run's last.pt or a saved nktui state) on its run's validation split: "
        "loss, accuracy, confusion matrix, per-class precision/recall/accuracy, the most confidently wrong examples.",
    )
    parser.add_argument("path", metavar="PATH", help="the checkpoint file")
    device = SETTINGS["device"]
    parser.add_argument("--device", default="auto", metavar=device.metavar, help=f"{device.help} (default: auto)")
    parser.add_argument("--data-dir", default=None, metavar="DIR", help="where the data set is (default: the run's)")
    parser.add_argument("--split", default="val", choices=("val", "train"), help="which split (default: val)")
    parser.add_argument("--wrong", type=int, default=8, metavar="N", help="confidently wrong examples to show (8)")
    parser.add_argument("--no-download", action="store_true", help="never download a missing data set")
    return parser


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint (a run's last.pt, a folder holding one, or a saved state) with at least config, model and
    step; CheckpointError says what is wrong."""
    from ..run.checkpoint import load_checkpoint

    return load_checkpoint(path)


def trainer_for_checkpoint(path: str | Path, *, device: str = "auto", data_dir: str | None = None,
                           download: bool | None = None):
    """A Trainer rebuilt from the checkpoint's config (data, model) with the checkpoint's weights and step."""
    from ..engine import Trainer
    from ..protocol.config import RunConfig
    from ..protocol.errors import CheckpointError
    from ..engine.state import load_weights

    state = read_checkpoint(path)
    changes: dict[str, Any] = {"device": device}
    if data_dir is not None:
        changes["data_dir"] = data_dir
    if download is not None:
        changes["download"] = download
    config = RunConfig.from_dict({**state["config"], **changes}, source=str(path)).validate()
    trainer = Trainer(config)
    if "classes" in state and list(state["classes"]) != list(trainer.data.classes):
        raise CheckpointError(
            f"{path} was trained on classes {', '.join(map(str, state['classes']))[:80]}, but the data set has "
            f"{', '.join(trainer.data.classes)[:80]}"
        )
    load_weights(trainer.model, state["model"], str(path), config.model)
    trainer.step_count = int(state["step"])
    return trainer


def evaluate_checkpoint(path: str | Path, *, device: str = "auto", data_dir: str | None = None, split: str = "val",
                        wrong: int = 8, download: bool | None = None):
    """The `Evaluation` of a checkpoint's weights: what `nktui eval` prints."""
    from ..engine.evaluation import evaluate_in_detail

    trainer = trainer_for_checkpoint(path, device=device, data_dir=data_dir, download=download)
    return evaluate_in_detail(trainer, split, wrong)


def print_evaluation(ev, out: TextIO, *, path: str | None = None) -> None:
    from rich.console import Console

    from ..render import eval_tables

    console = Console(file=out, highlight=False)
    if path:
        console.print(f"[dim]{path}[/dim]")
    console.print(eval_tables.summary(ev))
    console.print()
    console.print(eval_tables.confusion_table(ev.result))
    console.print()
    console.print(eval_tables.class_table(ev))
    console.print()
    if console.is_terminal:
        console.print(eval_tables.wrong_examples(ev, console.width))
        return
    console.print(f"Most confidently wrong ({len(ev.wrong)}): sample, true, predicted, p(predicted), p(true)")
    classes = ev.result.classes
    for ex in ev.wrong:
        console.print(
            f"  #{ex.index} true {classes[ex.true]} predicted {classes[ex.predicted]} "
            f"p={ex.probability:.3f} p_true={ex.true_probability:.3f}"
        )


def main(argv: list[str]) -> int:
    """`nktui eval PATH [--device DEV] ...` (argv: the arguments after `eval`); returns the exit code."""
    try:
        args = make_parser().parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    from ..protocol.errors import NktuiError

    try:
        ev = evaluate_checkpoint(
            args.path, device=args.device, data_dir=args.data_dir, split=args.split, wrong=max(args.wrong, 0),
            download=False if args.no_download else None,
        )
    except NktuiError as exc:
        print_error(exc)
        return EXIT_BAD_INPUT
    print_evaluation(ev, sys.stdout, path=args.path)
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(sys.argv[1:]))
