"""RunConfig: every setting of a training run, with validation and TOML in and out.

One frozen dataclass serves the CLI (each field is a `--flag`), the app's config pane, the run directory's
`config.toml` and scripts. Each field carries its `Setting` (metadata: the flag's help, whether it applies live,
whether --resume may change it, the watchpoint it switches off, its config pane row), the one place these are said:
`SETTINGS`, `LIVE`, `LIVE_UPDATES`, `RESUMABLE` and `watch_off_flags()` are read from it (tests/test_settings.py
checks that the flags, the pane, `Trainer.update_live` and --resume agree). `validate()` checks everything that can
be checked without touching data or devices and raises `ConfigError` with a message that names the field, the bad
value and what would be accepted. Config files are read bounded (`read_config_file`: regular files of at most 1 MB,
a UTF-8 byte order mark skipped), and `cap_threads` holds `threads` to the machine's cores.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config_file import CONFIG_FILE_LIMIT, read_config_file, toml_value  # noqa: F401 (the limit: imported from here)
from .errors import ConfigError
from .settings import Setting, setting

BUILTIN_DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10")
BUILTIN_MODELS = ("linear", "mlp", "cnn")
OPTIMIZERS = ("sgd", "adam", "adamw")
ACTIVATIONS = ("relu", "sigmoid", "tanh")
DEFAULT_STEPS = 10_000  # when neither --steps nor --epochs is given: ~10 s of the linear model on digits
APP_DEFAULT_STEPS = 1_000_000  # the same for the app: a debugger's run is still there when you reach for the keys
SEED_MAX = 2**63 - 1  # torch's generators take 64-bit seeds; numpy's and the split's are derived from it
NAME_MAX = 255  # bytes in one file name (Linux, macOS); a longer --run-dir part fails with ENAMETOOLONG


def parse_positive_float(text: object, name: str = "lr") -> float:
    """Parse `0.01`, `1e-3` or a number into a positive finite float, or raise ConfigError saying why not."""
    raw = str(text).strip()
    if not raw:
        raise ConfigError(f"{name} is empty: enter a positive number such as 0.01 or 1e-3")
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number such as 0.01 or 1e-3, not {raw!r}") from None
    if math.isnan(value) or math.isinf(value):
        raise ConfigError(f"{name} must be a finite number, not {raw}")
    if value <= 0:
        raise ConfigError(f"{name} must be greater than 0, not {raw}")
    return value


def parse_lr(text: object) -> float:
    """A learning rate as typed by a user: `0.01`, `1e-3`. Raises ConfigError for empty, text, <= 0, nan, inf."""
    return parse_positive_float(text, "lr")


def parse_hidden(text: object) -> tuple[int, ...]:
    """`128,64` -> (128, 64) (a trailing comma is fine); ConfigError for no sizes, an empty one or a bad one."""
    if isinstance(text, (list, tuple)):
        parts = [str(p) for p in text]
    else:
        parts = str(text).replace(" ", "").split(",")
        if len(parts) > 1 and parts[-1] == "":
            parts.pop()  # `128,`
        if parts == [""]:
            parts = []
        elif "" in parts:
            raise ConfigError(f"hidden has an empty layer size in {text!r}: give sizes such as 128,64")
    if not parts:
        raise ConfigError("hidden is empty: give at least one layer size such as 128,64 (no hidden layer: --model linear)")
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"hidden must be comma-separated layer sizes such as 128,64, not {text!r}") from None
    if any(s < 1 for s in sizes):
        raise ConfigError(f"hidden layer sizes must be at least 1, not {text!r}")
    return sizes


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run. Field names are the CLI's long flags with dashes as underscores; each field's
    `Setting` (its metadata) says what the flag, the config pane, a live change and --resume make of it."""

    dataset: str = setting(
        "digits", "digits (bundled, offline), mnist, fashion-mnist, cifar10 or imagefolder:PATH", metavar="NAME",
        pane="data", tip="digits, mnist, fashion-mnist, cifar10 or imagefolder:PATH")
    data_dir: str = setting(
        "data", "where torchvision data sets are read from and downloaded to", metavar="DIR", resume=True)
    image_size: int = setting(32, "imagefolder images are resized to N x N", metavar="N")
    val_fraction: float = setting(0.2, "fraction of the samples held out for validation, in (0, 1)", metavar="F")
    model: str = setting(
        "linear", "linear, mlp, cnn, or your own as package.module:factory or path/to/file.py:factory",
        metavar="NAME", pane="model", tip="linear, mlp, cnn or package.module:factory")
    hidden: tuple[int, ...] = setting(
        (128, 64), "mlp hidden layer sizes, comma-separated", metavar="SIZES", models=("mlp",),
        pane="hidden", tip="the MLP's hidden layer sizes, comma-separated: 128,64")
    activation: str = setting(
        "relu", "mlp and cnn activation: relu, sigmoid or tanh", metavar="NAME", models=("mlp", "cnn"),
        pane="activ.", tip="the activation between layers (mlp and cnn)", choices=ACTIVATIONS)
    optimizer: str = setting("sgd", "sgd, adam or adamw", metavar="NAME", pane="optim", choices=OPTIMIZERS)
    lr: float = setting(
        0.1, "learning rate, a positive number such as 0.1 or 1e-3", metavar="LR", live=True, resume=True,
        pane="lr", tip="learning rate: Enter applies it now, no restart")
    momentum: float = setting(
        0.0, "SGD momentum in [0, 1)", metavar="M", optimizers=("sgd",),
        pane="moment.", tip="SGD momentum, 0 for plain SGD")
    nesterov: bool = setting(False, "Nesterov momentum (needs --optimizer sgd and --momentum above 0)")
    weight_decay: float = setting(0.0, "L2 weight decay (decoupled for adamw)", metavar="WD", pane="w.decay")
    batch_size: int = setting(64, "samples per step", metavar="N", pane="batch")
    steps: int | None = setting(
        None, "the global step to stop at (default: {steps} unless --epochs is given)", metavar="N", live=True,
        resume=True, pane="steps",
        tip="the step to stop at: Enter applies it now (a finished run goes on with space); empty: the default")
    epochs: int | None = setting(None, "train for N epochs instead of --steps", metavar="N", resume=True)
    eval_every: int | None = setting(
        None, "validate every N steps; 0: only at the end (default: once per epoch)", metavar="N", resume=True)
    seed: int = setting(0, "seed of the split, the batch order and the initial weights", metavar="N", pane="seed")
    device: str = setting(
        "auto", "auto, cpu, cuda, cuda:N or mps", metavar="DEV", resume=True,
        pane="device", tip="auto, cpu, cuda, cuda:N or mps")
    run_dir: str | None = setting(
        None, "where config.toml, metrics.jsonl and last.pt go (default: runs/<date-time>/)", metavar="DIR",
        resume=True)
    log_every: int = setting(
        50, "measure every layer and log a metrics row every N steps", metavar="N", live=True, resume=True)
    checkpoint_every: int = setting(
        0, "also write last.pt every N steps; 0: every 10 minutes of training (always: at the end, on s in the app, "
        "on every exit)", metavar="N", resume=True)
    csv: bool = setting(
        False, "also write metrics.csv (the metrics.jsonl rows as a table) into the run directory", resume=True)
    tensorboard: bool = setting(
        False, "also write TensorBoard event files into the run directory (pip install 'nktui[tensorboard]')",
        resume=True)
    download: bool = setting(True, "download a missing torchvision data set into --data-dir", resume=True)
    activations: bool = setting(
        False, "also measure each layer's activations: mean, std, dead ReLUs", resume=True)
    rewind_depth: int = setting(
        20, "how many earlier training states are kept to rewind to; 0: none", metavar="N", resume=True)
    rewind_every: int = setting(
        64, "keep a state to rewind to every N steps; 0: only before single steps", metavar="N", resume=True)
    threads: int = setting(
        0, "CPU threads for tensor ops; 0: PyTorch's default for nktui train, one fewer than the cores for the app "
        "(the UI needs a core: on a busy CPU, too many threads make small models crawl)", metavar="N", resume=True)
    # Watchpoints: pause the app (end nktui train with exit code 3) when one fires. They all apply live.
    watch: bool = setting(
        True, "watchpoints: pause the app (or end nktui train with exit code 3) when one fires", live=True,
        resume=True, pane="watch", tip="all watchpoints on or off")
    watch_loss_jump: float = setting(
        10.0, "watchpoint: the loss above X times its recent median; 0: off", metavar="X", live=True, resume=True,
        watch="loss_jump", off=0, pane="loss ×",
        tip="watchpoint: stop when the loss jumps above X times its recent median (0: off)")
    watch_grad_jump: float = setting(
        100.0, "watchpoint: a layer's gradient norm above X times its recent median; 0: off", metavar="X",
        live=True, resume=True, watch="grad_jump", off=0, pane="grad ×",
        tip="watchpoint: stop when a layer's gradient norm jumps above X times its recent median (0: off)")
    # (high above low: the pane shows the band from the top)
    watch_ratio_high: float = setting(
        1.0, "watchpoint: update:weight ratio above R on --watch-ratio-steps measured steps; 0: off", metavar="R",
        live=True, resume=True, watch="ratio_band", off=0, pane="upd/w >",
        tip="watchpoint: stop when a layer's update:weight ratio stays above this for 'steps' measured steps")
    watch_ratio_low: float = setting(
        1e-8, "watchpoint: update:weight ratio below R on --watch-ratio-steps measured steps; 0: off", metavar="R",
        live=True, resume=True, watch="ratio_band", off=0, pane="upd/w <",
        tip="watchpoint: stop when a layer's update:weight ratio stays below this for 'steps' measured steps")
    watch_ratio_steps: int = setting(
        3, "measured steps in a row the ratio must stay outside the band", metavar="K", live=True, resume=True,
        pane="  steps", tip="how many measured steps in a row the update:weight ratio must stay outside its band")
    watch_vanishing: float = setting(
        1e-4, "watchpoint: the first layer's gradient norm below X times the last layer's; 0: off", metavar="X",
        live=True, resume=True, watch="vanishing", off=0, pane="vanish",
        tip="watchpoint: stop when the first layer's gradient norm is below X times the last layer's (0: off)")
    watch_dead_relu: float = setting(
        0.95, "watchpoint: a ReLU layer with more than this fraction of dead units (needs --activations)",
        metavar="F", live=True, resume=True, watch="dead_relu", off=0, pane="dead",
        tip="watchpoint: stop when more than this fraction of a ReLU layer's units are dead (needs --activations)")

    def __post_init__(self) -> None:
        # Accept what TOML and argparse hand over (lists, strings) and normalise it once, here.
        if not isinstance(self.hidden, tuple):
            object.__setattr__(self, "hidden", parse_hidden(self.hidden))
        if isinstance(self.lr, str):  # "1e-3" from a hand-written TOML file: the optimizer needs a number
            try:
                object.__setattr__(self, "lr", float(self.lr))
            except ValueError:
                pass  # validate() says what is wrong with it

    # -- validation -----------------------------------------------------------------------------------------
    def validate(self) -> RunConfig:
        """Raise ConfigError for the first invalid field; return self so calls can be chained."""
        # (the text "false" would otherwise count as true)
        for name in SWITCHES:
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, not {getattr(self, name)!r}")
        for name in ("dataset", "model", "device"):  # (a hand-written TOML file can hold `device = 0`)
            if not isinstance(getattr(self, name), str):
                example, value = getattr(RunConfig, name), getattr(self, name)
                raise ConfigError(f'{name} must be text such as "{example}", not {value!r}')
        dataset = self.dataset
        if not (dataset in BUILTIN_DATASETS or dataset.startswith("imagefolder:")):
            raise ConfigError(
                f"unknown dataset {dataset!r}: choose one of {', '.join(BUILTIN_DATASETS)} or imagefolder:PATH"
            )
        if dataset == "imagefolder:":
            raise ConfigError("imagefolder needs a folder: --dataset imagefolder:PATH (one subfolder per class)")
        if not (self.model in BUILTIN_MODELS or ":" in self.model):
            raise ConfigError(
                f"unknown model {self.model!r}: choose one of {', '.join(BUILTIN_MODELS)} "
                "or your own as package.module:factory"
            )
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation {self.activation!r}: choose one of {', '.join(ACTIVATIONS)}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
        parse_lr(self.lr)
        _check_range("momentum", self.momentum, 0.0, 1.0, upper_open=True)
        if self.nesterov and (self.optimizer != "sgd" or self.momentum <= 0):
            raise ConfigError("nesterov needs --optimizer sgd with --momentum above 0 (for example 0.9)")
        _check_range("weight_decay", self.weight_decay, 0.0, math.inf)
        _check_range("val_fraction", self.val_fraction, 0.0, 1.0, lower_open=True, upper_open=True)
        _check_int("batch_size", self.batch_size, 1)
        _check_int("image_size", self.image_size, 1)
        _check_int("log_every", self.log_every, 1)
        _check_int("checkpoint_every", self.checkpoint_every, 0)
        if self.steps is not None:
            _check_int("steps", self.steps, 1)
        if self.epochs is not None:
            _check_int("epochs", self.epochs, 1)
        if self.steps is not None and self.epochs is not None:
            raise ConfigError("give --steps or --epochs, not both")
        for name in (name for name, s in SETTINGS.items() if s.watch):  # the thresholds, 0 (off) or more
            _check_range(name, getattr(self, name), 0.0, math.inf)
        _check_int("watch_ratio_steps", self.watch_ratio_steps, 0)
        _check_int("threads", self.threads, 0)
        _check_int("rewind_depth", self.rewind_depth, 0)
        _check_int("rewind_every", self.rewind_every, 0)
        if self.eval_every is not None:
            _check_int("eval_every", self.eval_every, 0)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"seed must be a whole number, not {self.seed!r}")
        if not 0 <= self.seed <= SEED_MAX:
            raise ConfigError(f"seed must be a whole number from 0 to 2**63 - 1 ({SEED_MAX}), not {self.seed}")
        _check_range("watch_dead_relu", self.watch_dead_relu, 0.0, 1.0)
        low, high = self.watch_ratio_low, self.watch_ratio_high
        if low and high and low >= high:
            raise ConfigError(
                f"watch_ratio_low {low:g} must be below watch_ratio_high {high:g}: the band is (low, high) "
                "(0 switches either side off)"
            )
        if self.run_dir is not None:
            _check_run_dir(self.run_dir)
        device = self.device
        if not (device in ("auto", "cpu", "cuda", "mps") or _is_indexed_cuda(device)):
            raise ConfigError(f"unknown device {device!r}: choose auto, cpu, cuda, cuda:N or mps")
        return self

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with some fields changed, validated."""
        return dataclasses.replace(self, **changes).validate()

    def step_limit(self, steps_per_epoch: int) -> int:
        """The global step at which the run finishes: --steps, else --epochs worth of steps, else DEFAULT_STEPS."""
        if self.steps is not None:
            return self.steps
        if self.epochs is not None:
            return self.epochs * steps_per_epoch
        return DEFAULT_STEPS

    # -- TOML -----------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain values only (no None), in field order: what config.toml holds."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def to_toml(self) -> str:
        lines = ["# nktui run configuration: `nktui --config THIS_FILE` repeats the run"]
        lines += [f"{key} = {toml_value(value)}" for key, value in self.to_dict().items()]
        return "\n".join(lines) + "\n"

    def save(self, path: str | Path) -> None:
        """Write the TOML whole or not at all (a full disk leaves the old file as it was); OSError if it cannot."""
        from nktui.safe_files import write_text_atomic  # (the run's file layer; stdlib only, no torch)

        write_text_atomic(path, self.to_toml())

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> RunConfig:
        """Build from a mapping whose keys are field names (dashes allowed); unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        clean: dict[str, Any] = {}
        for key, value in values.items():
            name = key.replace("-", "_")
            if name not in names:
                raise ConfigError(f"{source}: unknown setting {key!r}; known settings: {', '.join(sorted(names))}")
            clean[name] = value
        try:
            return cls(**clean)
        except TypeError as exc:  # pragma: no cover - dataclass signature mismatch
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        """Read a TOML file written by `save` or by hand; raises ConfigError with the file's name on problems.
        Only a regular file of at most CONFIG_FILE_LIMIT bytes is read (a FIFO would block, /dev/zero never end);
        a UTF-8 byte order mark (as some Windows editors write) is skipped."""
        values = read_config_file(path)
        return cls.from_dict(values, source=str(path))



def _settings() -> dict[str, Setting]:
    out = {}
    for f in dataclasses.fields(RunConfig):
        meta = f.metadata.get("setting")
        if meta is None:  # (tests/test_config.py says which field lacks one)
            continue
        out[f.name] = dataclasses.replace(meta, name=f.name, type=str(f.type))
    return out


SETTINGS: dict[str, Setting] = _settings()  # field name -> its Setting, in field order
LIVE = frozenset(name for name, s in SETTINGS.items() if s.live)  # what may change while the run goes on
LIVE_UPDATES = LIVE - {"lr"}  # what `Trainer.update_live` takes: the LR goes its own way (SetLr: the optimizer's)
RESUMABLE = frozenset(name for name, s in SETTINGS.items() if s.resume)  # what a flag may change on --resume
SWITCHES = tuple(name for name, s in SETTINGS.items() if s.type == "bool")  # the on/off settings, in field order


def watch_off_flags() -> dict[str, str]:
    """Each watchpoint (WatchHit.watchpoint) -> the flags that switch it off, such as
    `--watch-ratio-high 0 --watch-ratio-low 0`."""
    flags: dict[str, list[str]] = {}
    for s in SETTINGS.values():
        if s.watch:
            flags.setdefault(s.watch, []).append(s.flag_for(s.off))
    return {watchpoint: " ".join(parts) for watchpoint, parts in flags.items()}


def cap_threads(config: RunConfig) -> tuple[RunConfig, str | None]:
    """(config with `threads` at most this machine's usable cores, a warning when it was more)."""
    cores = usable_cores()
    if config.threads <= cores:
        return config, None
    warning = f"--threads {config.threads} is more than this machine's {cores} cores: using {cores}"
    return dataclasses.replace(config, threads=cores), warning


def usable_cores() -> int:
    """The cores this process may run on (its affinity where the OS says, else all of them)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _check_run_dir(run_dir: object) -> None:
    if not isinstance(run_dir, str):
        raise ConfigError(f"run_dir must be text (a folder), not {run_dir!r}")
    if not run_dir.strip():
        raise ConfigError("--run-dir is empty: give a folder, or leave it out for a fresh runs/<date-time>/")
    for part in Path(run_dir).parts:
        size = len(os.fsencode(part))
        if size > NAME_MAX:
            raise ConfigError(
                f"--run-dir has a name of {size} bytes ({part[:24]}...): a file or folder name can be at most "
                f"{NAME_MAX} bytes"
            )


def _is_indexed_cuda(device: str) -> bool:
    head, _, index = device.partition(":")
    return head == "cuda" and index.isdigit()


def _check_int(name: str, value: object, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name} must be a whole number of at least {minimum}, not {value!r}")


def _check_range(
    name: str, value: object, lo: float, hi: float, *, lower_open: bool = False, upper_open: bool = False
) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > lo if lower_open else value >= lo) and (value < hi if upper_open else value <= hi)
    if not ok:
        left, right = ("(" if lower_open else "["), (")" if upper_open else "]")
        raise ConfigError(f"{name} must be a number in {left}{lo:g}, {hi:g}{right}, not {value!r}")


def app_threads() -> int:
    """CPU threads for the app's trainer: one fewer than the cores, so that the UI keeps one (why: ARCHITECTURE.md,
    "Two threads, two directions", on libgomp's pool)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
    return max(1, cores - 1)
