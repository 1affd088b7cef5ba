"""RunConfig: validation messages, TOML in and out, from_dict, parse_lr, step limits."""

from __future__ import annotations

import math
import os
import re
import time

import pytest

from nktui.protocol.config import CONFIG_FILE_LIMIT, DEFAULT_STEPS, cap_threads, parse_hidden, usable_cores
from nktui.training import ConfigError, RunConfig, parse_lr


def test_defaults_are_valid():
    config = RunConfig()
    assert config.validate() is config


@pytest.mark.parametrize(
    "changes, says",
    [
        (dict(dataset="imagenet"), "unknown dataset 'imagenet': choose one of digits, mnist, fashion-mnist, cifar10"),
        (dict(dataset="imagefolder:"), "imagefolder needs a folder"),
        (dict(model="resnet"), "unknown model 'resnet': choose one of linear, mlp, cnn"),
        (dict(activation="gelu"), "unknown activation 'gelu': choose one of relu, sigmoid, tanh"),
        (dict(optimizer="rmsprop"), "unknown optimizer 'rmsprop': choose one of sgd, adam, adamw"),
        (dict(lr=0), "lr must be greater than 0, not 0"),
        (dict(lr=-0.5), "lr must be greater than 0, not -0.5"),
        (dict(lr=math.nan), "lr must be a finite number, not nan"),
        (dict(lr=math.inf), "lr must be a finite number, not inf"),
        (dict(lr="fast"), "lr must be a number such as 0.01 or 1e-3, not 'fast'"),
        (dict(momentum=1.0), "momentum must be a number in [0, 1), not 1.0"),
        (dict(momentum=-0.1), "momentum must be a number in [0, 1), not -0.1"),
        (dict(momentum=math.nan), "momentum must be a number in [0, 1), not nan"),
        (dict(momentum="0.9"), "momentum must be a number in [0, 1), not '0.9'"),
        (dict(nesterov=True), "nesterov needs --optimizer sgd with --momentum above 0"),
        (dict(nesterov=True, momentum=0.9, optimizer="adam"), "nesterov needs --optimizer sgd"),
        (dict(weight_decay=-1e-4), "weight_decay must be a number in [0, inf], not -0.0001"),
        (dict(weight_decay=math.inf), "weight_decay must be a number in [0, inf], not inf"),
        (dict(val_fraction=0.0), "val_fraction must be a number in (0, 1), not 0.0"),
        (dict(val_fraction=1.0), "val_fraction must be a number in (0, 1), not 1.0"),
        (dict(batch_size=0), "batch_size must be a whole number of at least 1, not 0"),
        (dict(batch_size=32.0), "batch_size must be a whole number of at least 1, not 32.0"),
        (dict(batch_size=True), "batch_size must be a whole number of at least 1, not True"),
        (dict(image_size=0), "image_size must be a whole number of at least 1, not 0"),
        (dict(log_every=0), "log_every must be a whole number of at least 1, not 0"),
        (dict(steps=0), "steps must be a whole number of at least 1, not 0"),
        (dict(epochs=-2), "epochs must be a whole number of at least 1, not -2"),
        (dict(steps=100, epochs=2), "give --steps or --epochs, not both"),
        (dict(eval_every=-1), "eval_every must be a whole number of at least 0, not -1"),
        (dict(seed=1.5), "seed must be a whole number, not 1.5"),
        (dict(seed=False), "seed must be a whole number, not False"),
        (dict(device="tpu"), "unknown device 'tpu': choose auto, cpu, cuda, cuda:N or mps"),
        (dict(device="cuda:x"), "unknown device 'cuda:x'"),
        (dict(dataset=5), 'dataset must be text such as "digits", not 5'),
        (dict(model=None), 'model must be text such as "linear", not None'),
        (dict(device=0), 'device must be text such as "auto", not 0'),
        (dict(seed=-1), "seed must be a whole number from 0 to 2**63 - 1 (9223372036854775807), not -1"),
        (dict(seed=2**63), "seed must be a whole number from 0 to 2**63 - 1"),
        (dict(seed=2**200), "not 1606938044258990275541962092341162602522202993782792835301376"),
        (dict(watch_dead_relu=5), "watch_dead_relu must be a number in [0, 1], not 5"),
        (dict(watch_ratio_low=2, watch_ratio_high=1), "watch_ratio_low 2 must be below watch_ratio_high 1"),
        (dict(watch_ratio_low=1, watch_ratio_high=1), "watch_ratio_low 1 must be below watch_ratio_high 1"),
        (dict(run_dir=""), "--run-dir is empty"),
        (dict(run_dir="  "), "--run-dir is empty"),
        (dict(run_dir="runs/" + "a" * 256), "--run-dir has a name of 256 bytes"),
        (dict(run_dir="é" * 128), "a name of 256 bytes"),
        (dict(run_dir=3), "run_dir must be text"),
    ],
)
def test_validate_names_the_field_and_the_bad_value(changes, says):
    config = RunConfig(**changes)
    with pytest.raises(ConfigError) as info:
        config.validate()
    assert says in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "changes",
    [
        dict(dataset="imagefolder:/some/where"),
        dict(model="pkg.mod:factory"),
        dict(model="path/to/file.py:build"),
        dict(nesterov=True, momentum=0.9),
        dict(momentum=0.0, weight_decay=0.0),
        dict(eval_every=0),
        dict(epochs=3),
        dict(steps=1),
        dict(device="cuda:1"),
        dict(device="mps"),
        dict(seed=0),
        dict(seed=2**63 - 1),
        dict(watch_ratio_low=0.5, watch_ratio_high=0),  # 0 switches the high side off
        dict(watch_dead_relu=1.0),
        dict(run_dir="runs/" + "é" * 127),  # 254 bytes
        dict(lr=1),
    ],
)
def test_validate_accepts_good_values(changes):
    RunConfig(**changes).validate()


def test_replace_validates():
    config = RunConfig()
    assert config.replace(lr=0.5).lr == 0.5
    assert config.lr == 0.1  # frozen: replace makes a copy
    with pytest.raises(ConfigError, match="batch_size"):
        config.replace(batch_size=0)
    with pytest.raises(Exception):
        config.lr = 0.2  # type: ignore[misc]


def test_hidden_is_parsed_from_text_or_lists():
    assert RunConfig(hidden="128, 64").hidden == (128, 64)
    assert RunConfig(hidden=[32]).hidden == (32,)
    assert parse_hidden("8,") == (8,)  # a trailing comma is fine
    for text, says in (("", "hidden is empty"), (" ", "hidden is empty"), ([], "hidden is empty"),
                       ("128,,64", "hidden has an empty layer size in '128,,64'"), (",64", "an empty layer size"),
                       ("8,,", "an empty layer size")):
        with pytest.raises(ConfigError, match=re.escape(says)):
            RunConfig(hidden=text)
    with pytest.raises(ConfigError, match="comma-separated layer sizes such as 128,64, not 'a,b'"):
        RunConfig(hidden="a,b")
    with pytest.raises(ConfigError, match="at least 1"):
        RunConfig(hidden=[16, 0])


# -- TOML -------------------------------------------------------------------------------------------------------
def test_toml_round_trip(tmp_path):
    config = RunConfig(
        dataset="imagefolder:/data/my \"pets\" \u00e9t\u00e9\t",
        data_dir="C:\\data\\sets",
        model="mlp",
        hidden=(32, 16),
        activation="tanh",
        optimizer="sgd",
        lr=1e-3,
        momentum=0.9,
        nesterov=True,
        weight_decay=5e-4,
        batch_size=16,
        epochs=3,
        eval_every=0,
        seed=42,
        device="cpu",
        run_dir="runs/one",
        log_every=10,
        download=False,
        activations=True,
    ).validate()
    path = tmp_path / "config.toml"
    config.save(path)
    loaded = RunConfig.load(path)
    assert loaded == config
    assert loaded.hidden == (32, 16) and loaded.steps is None and loaded.epochs == 3
    assert path.read_text(encoding="utf-8").startswith("#")


def test_toml_round_trip_of_the_defaults(tmp_path):
    path = tmp_path / "config.toml"
    RunConfig().save(path)
    assert RunConfig.load(path) == RunConfig()
    assert "steps" not in RunConfig().to_dict()  # None is left out
    assert RunConfig(hidden=()).to_dict()["hidden"] == []


def test_from_dict_accepts_dashes():
    config = RunConfig.from_dict({"batch-size": 16, "eval-every": 5, "weight-decay": 0.01, "hidden": [8, 4], "lr": 0.2})
    assert (config.batch_size, config.eval_every, config.weight_decay, config.hidden, config.lr) == (
        16, 5, 0.01, (8, 4), 0.2,
    )


def test_from_dict_rejects_unknown_settings():
    with pytest.raises(ConfigError) as info:
        RunConfig.from_dict({"learning-rate": 0.1}, source="my.toml")
    message = str(info.value)
    assert message.startswith("my.toml: unknown setting 'learning-rate'")
    assert "lr" in message and "batch_size" in message  # lists what is known


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        RunConfig.load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("lr = = 3\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        RunConfig.load(bad)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("colour = 'blue'\n")
    with pytest.raises(ConfigError, match="unknown setting 'colour'") as info:
        RunConfig.load(unknown)
    assert "unknown.toml" in str(info.value)


def test_config_files_are_bounded_regular_files(tmp_path):
    """A FIFO would block the read forever, /dev/zero never end it: only regular files of at most 1 MB are read."""
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    started = time.monotonic()
    for path, says in ((fifo, "is not a regular file"), ("/dev/zero", "is not a regular file"),
                       (tmp_path, "is a folder"), ("", "--config is empty")):
        with pytest.raises(ConfigError, match=re.escape(says)):
            RunConfig.load(path)
    assert time.monotonic() - started < 5
    big = tmp_path / "big.toml"
    big.write_bytes(b"# " + b"x" * CONFIG_FILE_LIMIT + b"\n")
    with pytest.raises(ConfigError, match="is larger than 1 MB"):
        RunConfig.load(big)
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b'dataset = "caf\xe9"\n')
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        RunConfig.load(latin)


def test_a_config_file_with_a_byte_order_mark_loads(tmp_path):
    path = tmp_path / "windows.toml"
    path.write_bytes("\ufefflr = 0.05\nseed = 3\n".encode("utf-8"))
    config = RunConfig.load(path)
    assert (config.lr, config.seed) == (0.05, 3)


def test_threads_are_capped_at_the_cores_with_a_warning():
    cores = usable_cores()
    config, warning = cap_threads(RunConfig(threads=10_000))
    assert config.threads == cores and warning == f"--threads 10000 is more than this machine's {cores} cores: using {cores}"
    assert cap_threads(RunConfig(threads=cores)) == (RunConfig(threads=cores), None)
    assert cap_threads(RunConfig()) == (RunConfig(), None)  # 0: PyTorch's default


def test_hand_written_toml_with_wrong_types_gives_config_errors(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("device = 0\n")
    with pytest.raises(ConfigError, match="device must be text"):
        RunConfig.load(path).validate()
    path.write_text("batch_size = '32'\n")
    with pytest.raises(ConfigError, match="batch_size must be a whole number"):
        RunConfig.load(path).validate()


def test_hand_written_toml_with_lr_as_text_trains(tmp_path):
    """A learning rate written as text ("1e-3") is accepted by validate(), so it must reach the optimizer as a
    number and not as a string."""
    path = tmp_path / "config.toml"
    path.write_text('lr = "1e-3"\nsteps = 2\ndevice = "cpu"\n')
    config = RunConfig.load(path).validate()
    assert config.lr == 1e-3 and isinstance(config.lr, float)
    from nktui.training import Trainer

    assert Trainer(config).step().lr == 1e-3


# -- parse_lr -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, value", [("0.01", 0.01), ("1e-3", 1e-3), (" 0.5 ", 0.5), (2, 2.0), (0.25, 0.25),
                                         ("1E2", 100.0)])
def test_parse_lr_accepts(text, value):
    assert parse_lr(text) == value
    assert isinstance(parse_lr(text), float)


@pytest.mark.parametrize(
    "text, says",
    [("", "lr is empty"), ("   ", "lr is empty"), ("abc", "must be a number"), ("0", "greater than 0"),
     ("-1e-3", "greater than 0"), ("nan", "finite"), ("inf", "finite"), ("-inf", "finite"), (None, "must be a number"),
     (True, "must be a number")],
)
def test_parse_lr_rejects(text, says):
    with pytest.raises(ConfigError, match=says):
        parse_lr(text)


# -- step limit ---------------------------------------------------------------------------------------------------
def test_step_limit():
    assert RunConfig(steps=123).step_limit(44) == 123
    assert RunConfig(epochs=3).step_limit(44) == 132
    assert RunConfig().step_limit(44) == DEFAULT_STEPS
    assert RunConfig(steps=5).validate().step_limit(1000) == 5
