"""Every setting is said once, on RunConfig (each field's `Setting`), and everything that lists settings agrees with it:
the flags and their help, the config pane's rows and live set, what `Trainer.update_live` takes, what --resume may
change, and the flags that switch a watchpoint off. A setting cannot be half-added."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from nktui import cli
from nktui.cli import resume
from nktui.cli.train import WATCH_FLAGS
from nktui.protocol.config import (
    DEFAULT_STEPS, LIVE, LIVE_UPDATES, RESUMABLE, SETTINGS, SWITCHES, RunConfig, Setting, watch_off_flags,
)

FIELDS = [f.name for f in dataclasses.fields(RunConfig)]


def test_every_field_has_its_setting():
    for f in dataclasses.fields(RunConfig):
        setting = f.metadata.get("setting")
        assert isinstance(setting, Setting), f"RunConfig.{f.name} has no Setting: declare it with setting(...)"
        assert setting.help.strip(), f.name
    assert list(SETTINGS) == FIELDS
    assert all(s.name == name and s.type for name, s in SETTINGS.items())
    assert set(SWITCHES) == {f.name for f in dataclasses.fields(RunConfig) if f.type == "bool"}


@pytest.mark.parametrize("parser", cli.make_parsers(), ids=lambda p: p.prog)
def test_the_flags_are_the_settings(parser: argparse.ArgumentParser):
    actions = {a.dest: a for a in parser._actions if a.dest in SETTINGS}
    assert set(actions) == set(SETTINGS)
    for name, setting in SETTINGS.items():
        action = actions[name]
        assert setting.flag in action.option_strings
        assert action.default is None  # "not given": only given flags override --config / the checkpoint
        assert action.help.replace("%%", "%").startswith(setting.help.format(steps=DEFAULT_STEPS)), name
        if setting.type == "bool":
            assert isinstance(action, argparse.BooleanOptionalAction), name
            assert "--no-" + setting.flag[2:] in action.option_strings
        elif setting.metavar:
            assert action.metavar == setting.metavar, name
    assert cli.FLAG_HELP == {name: (s.metavar, s.help) for name, s in SETTINGS.items()}


def test_the_config_pane_is_the_settings_with_a_pane_label():
    from nktui.ui.widgets import config_pane

    rows = [s for s in SETTINGS.values() if s.pane]
    assert [f.name for f in config_pane.FIELDS] == [s.name for s in rows]
    assert [f.label for f in config_pane.FIELDS] == [s.pane for s in rows]
    assert [f.tooltip for f in config_pane.FIELDS] == [s.tip for s in rows]
    assert set(config_pane.LIVE_FIELDS) == LIVE & {s.name for s in rows}
    for field in config_pane.FIELDS:  # what the pane parses is what RunConfig takes
        default = getattr(RunConfig(), field.name)
        text = config_pane.field_text(RunConfig(), field)
        assert config_pane.parse_field(field.name, text) == default, field.name
    # a setting for some models or optimizers only is hidden for the others
    for s in rows:
        for model in ("linear", "mlp", "cnn"):
            for optimizer in ("sgd", "adam", "adamw"):
                shown = (not s.models or model in s.models) and (not s.optimizers or optimizer in s.optimizers)
                assert config_pane.applies(s.name, model, optimizer) == shown


def test_what_applies_live_is_what_update_live_takes(make_trainer):
    from nktui.engine.trainer import Trainer

    assert Trainer.LIVE_SETTINGS == LIVE_UPDATES == LIVE - {"lr"}  # the LR goes through set_lr
    trainer = make_trainer(steps=100)
    for name in sorted(LIVE_UPDATES):
        trainer.update_live(**{name: getattr(trainer.config, name)})  # accepted
    for name in sorted(set(SETTINGS) - LIVE_UPDATES):
        with pytest.raises(ValueError, match="cannot change while training"):
            trainer.update_live(**{name: getattr(trainer.config, name)})


def test_live_settings_may_change_on_resume_and_resume_takes_what_the_settings_say():
    assert resume.CHANGEABLE == RESUMABLE
    assert LIVE <= RESUMABLE  # what may change while running may change on --resume
    # a field that shapes the model, the data or the optimizer is not resumable
    assert {"dataset", "model", "hidden", "optimizer", "seed", "batch_size"}.isdisjoint(RESUMABLE)


def test_watchpoint_off_flags_come_from_the_settings():
    assert WATCH_FLAGS == watch_off_flags()
    for watchpoint, line in WATCH_FLAGS.items():
        config, _ = cli.build_config(["train", *line.split()])
        for s in SETTINGS.values():
            if s.watch == watchpoint:
                assert getattr(config, s.name) == s.off
    for s in SETTINGS.values():
        if s.watch:
            assert s.off is not None and s.live and s.resume, s.name
    assert set(WATCH_FLAGS) == {"loss_jump", "grad_jump", "ratio_band", "dead_relu", "vanishing"}


def test_every_watchpoint_the_watcher_reports_has_its_switch():
    import re
    from pathlib import Path

    import nktui.probe.watch as watch

    names = set(re.findall(r'WatchHit\("(\w+)"', Path(watch.__file__).read_text()))
    assert names - {"nonfinite"} == set(WATCH_FLAGS)  # a nan/inf loss or gradient is always caught: --no-watch only
