"""The command line's arguments: the parsers, one flag per `RunConfig` field, and the validated `RunConfig` they build.

A `--config FILE.toml` is the base, and only the flags given on the command line override it (every flag defaults
to None, so "not given" and "given the default value" differ); `--resume PATH` takes the checkpoint's config
instead (`nktui.cli.resume`). A bad value is a `ConfigError`, which `build_config_or_exit_code` turns into one
`nktui: error:` line and exit code 2 (`nktui.messages`). `nktui`, `nktui train` and `nktui serve` use these flags.

Importing this module imports neither torch nor textual, so `nktui --help` is instant; the engine's config is
imported once the arguments are parsed.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from typing import Any

from .. import __version__
from ..messages import EXIT_BAD_INPUT, one_line, print_error
from ..protocol.config import SETTINGS  # (no torch: --help stays instant)

# (metavar, help) of each RunConfig field's flag, as its Setting says (nktui.protocol.config): read, not written here
FLAG_HELP: dict[str, tuple[str, str]] = {name: (s.metavar, s.help) for name, s in SETTINGS.items()}

COMMANDS = ("train", "serve", "eval", "attach", "ls")


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but its errors are one line in nktui's format (and still exit with code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        text = one_line(message)
        if text.startswith("unrecognized arguments") and any(c in text.split() for c in COMMANDS):
            text += " (a command goes first: nktui train [flags])"
        self.exit(EXIT_BAD_INPUT, f"nktui: error: {text} (see {self.prog} --help)\n")


@dataclass(frozen=True)
class Options:
    """What the command line asks for besides the RunConfig."""

    command: str = "app"  # "app" or "train"
    paused: bool = False  # the app opens paused before step 1
    resume: Any = None  # a nktui.cli.resume.ResumePlan for --resume PATH
    warnings: tuple[str, ...] = ()  # printed as `nktui: warning: ...` before the run starts
    in_process: bool = False  # the app's run in the app's own process (it ends with the app)
    argv: tuple[str, ...] = ()  # the command line as given (the run process gets the app's flags)


def config_fields() -> tuple[tuple[Any, ...], Any, int]:
    """(RunConfig's dataclass fields, a default RunConfig, DEFAULT_STEPS); nktui.protocol.config imports no torch."""
    from ..protocol.config import DEFAULT_STEPS, RunConfig

    return tuple(dataclasses.fields(RunConfig)), RunConfig(), DEFAULT_STEPS


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """`--config`, then one flag per RunConfig field: `--name-with-dashes`; booleans as `--x/--no-x`. Every flag
    defaults to None, which means "not given": only given flags override the config file."""
    group = parser.add_argument_group("run configuration (flags override --config)")
    group.add_argument(
        "--config", metavar="FILE.toml", default=None, help="start from this RunConfig TOML (a run's config.toml)"
    )
    group.add_argument(
        "--resume", metavar="PATH", default=None,
        help="continue from a checkpoint (a run's last.pt, or its folder) with its config; flags such as --steps "
        "(the global step to stop at), --lr and --device override it",
    )  # fmt: skip
    fields, defaults, default_steps = config_fields()
    for field in fields:
        setting = SETTINGS[field.name]
        flag, metavar, text = setting.flag, setting.metavar, setting.help.format(steps=default_steps)
        default = getattr(defaults, field.name)
        kind = str(field.type).replace(" ", "")
        if default is not None and "(default:" not in text:
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            if kind == "bool":
                shown = "on" if default else "off"
            text = f"{text} (default: {shown})"
        text = text.replace("%", "%%")
        if kind == "bool":
            group.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction, default=None, help=text)
            continue
        convert = {"int": int, "int|None": int, "float": float, "float|None": float}.get(kind, str)
        if field.name == "lr":
            convert = str  # parse_lr says what is wrong with `abc`, `0` or `nan`
        metavar = metavar or ("N" if convert is int else "X")
        group.add_argument(flag, dest=field.name, type=convert, metavar=metavar, default=None, help=text)


def make_parsers() -> tuple[ArgumentParser, ArgumentParser]:
    """(the app's parser `nktui`, the headless one `nktui train`)."""
    app = ArgumentParser(
        prog="nktui",
        description="A terminal debugger for gradient descent: train a PyTorch classifier and watch, pause, "
        "single-step and steer it.",
        epilog="commands:\n  nktui train [flags]   train without the app: progress, metrics.jsonl, last.pt "
        "(nktui train --help)\n  nktui serve [flags]   the app in a web browser, a run per tab (nktui serve --help)"
        "\n  nktui eval PATH       evaluate a checkpoint (last.pt) without the app (nktui eval --help)"
        "\n  nktui attach [RUN]    open the app on a live run (default: the newest under ./runs)"
        "\n  nktui ls [DIR]        list the live runs (default: under ./runs)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    app.add_argument("--version", action="version", version=f"nktui {__version__}")
    app.add_argument("--paused", action="store_true", help="open the app paused before step 1")
    app.add_argument("--in-process", action="store_true",
                     help="train inside the app's own process: the run ends with the app (no attach, no detach)")
    add_config_flags(app)
    train = ArgumentParser(
        prog="nktui train",
        description="Train without the app. Writes config.toml, metrics.jsonl and last.pt into the run directory "
        "and prints progress (a bar on a terminal, plain lines otherwise) and a closing summary.",
    )
    add_config_flags(train)
    return app, train


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, Options]:
    """Parse the command line; argparse exits with code 2 (one line) on a malformed one, 0 after --help."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    app, train = make_parsers()
    if args_list and args_list[0] == "train":
        return train.parse_args(args_list[1:]), Options(command="train")
    args = app.parse_args(args_list)
    return args, Options(command="app", paused=bool(args.paused), in_process=bool(args.in_process))


def build_config(argv: list[str] | None = None) -> tuple[Any, Options]:
    """(validated RunConfig, Options) from a command line; runs nothing. Raises ConfigError for bad values."""
    args, options = parse_args(argv)
    from ..protocol.config import cap_threads  # the engine, once parsing is done: --help stays instant
    from ..engine.sizing import check_model_fits

    config, options = _build_config(args, options)
    check_model_fits(config)  # a model that cannot fit in memory: one line now, not a MemoryError later
    config, warning = cap_threads(config)
    return config, dataclasses.replace(options, warnings=(warning,) if warning else ())


def _build_config(args: argparse.Namespace, options: Options) -> tuple[Any, Options]:
    from ..protocol.config import RunConfig, parse_lr
    from ..protocol.errors import ConfigError

    if args.resume is not None and not args.resume.strip():
        raise ConfigError("--resume is empty: give a run's last.pt or its folder")
    base = RunConfig.load(args.config) if args.config is not None else RunConfig()
    values = base.to_dict()
    fields, _, _ = config_fields()
    given = {f.name: getattr(args, f.name) for f in fields if getattr(args, f.name) is not None}
    if "lr" in given:
        given["lr"] = parse_lr(given["lr"])
    if args.resume:
        if args.config is not None:
            raise ConfigError("give --resume or --config, not both: a resumed run takes its config from the checkpoint")
        from .resume import plan_resume

        config, plan = plan_resume(args.resume, given)
        return config, dataclasses.replace(options, resume=plan)
    # --steps and --epochs are two ways to say how long: the one on the command line replaces the file's.
    if "steps" in given and "epochs" not in given:
        values.pop("epochs", None)
    if "epochs" in given and "steps" not in given:
        values.pop("steps", None)
    values.update(given)
    return RunConfig.from_dict(values, source="command line").validate(), options


def build_config_or_exit_code(args: list[str]) -> tuple[Any, Options] | int:
    """`build_config(args)`, or the exit code when it cannot: argparse's own (--help, --version: 0; a malformed
    command line: 2), or 2 after one line for a bad value (an `NktuiError`)."""
    try:
        return build_config(args)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    except Exception as exc:
        from ..protocol.errors import NktuiError

        if isinstance(exc, NktuiError):
            print_error(exc)
            return EXIT_BAD_INPUT
        raise
