"""The command line and the run directory: `nktui train` end to end in a subprocess, flags and --config,
one-line errors with exit code 2 for bad input, metrics.jsonl and last.pt."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch

from nktui import cli
from nktui.protocol.config import APP_DEFAULT_STEPS
from nktui.protocol.errors import CheckpointError, ConfigError
from nktui.protocol.records import EvalResult, LayerStats, frozen_mapping
from nktui.training import RunConfig, StepRecord, Trainer
from nktui.run.rundir import (
    MetricsWriter,
    atomic_save,
    choose_run_dir,
    default_run_dir,
    load_checkpoint,
    read_metrics,
    step_row,
)

ROOT = Path(__file__).resolve().parents[1]


def run_nktui(
    *args: str, cwd: Path | None = None, timeout: float = 120, python_flags=()
) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, *python_flags, "-m", "nktui", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env=env,
        timeout=timeout,
    )


def assert_one_line_error(rc: int, stderr: str) -> str:
    lines = stderr.splitlines()
    assert rc == 2, stderr
    assert "Traceback" not in stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith("nktui: error: "), stderr
    return lines[0]


# -- a real run ----------------------------------------------------------------------------------------------------
RUN_ARGS = ("--model", "mlp", "--hidden", "32", "--steps", "60", "--log-every", "20", "--device", "cpu")


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    # -X importtime lists every module the process imports on stderr: proof that `nktui train` skips Textual.
    proc = run_nktui("train", *RUN_ARGS, "--run-dir", str(run_dir), python_flags=("-X", "importtime"))
    expected = RunConfig(model="mlp", hidden=(32,), steps=60, log_every=20, device="cpu", run_dir=str(run_dir))
    return proc, run_dir, expected


def test_train_exits_0_and_prints_progress_and_summary(real_run):
    proc, run_dir, _ = real_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    out = proc.stdout
    assert re.search(r"^step 20/60 epoch 1 loss \d+\.\d+ acc \d\.\d+ lr 0\.1 ", out, re.M), out
    assert re.search(r"^step 60/60 ", out, re.M), out
    assert "finished 60 steps" in out
    assert re.search(r"^train\s+loss \d+\.\d+\s+accuracy \d\.\d+\s+\(\d+/1438\)", out, re.M), out
    assert re.search(r"^validation\s+loss \d+\.\d+\s+accuracy \d\.\d+\s+\(\d+/359\)", out, re.M), out
    assert str(run_dir) in out


def test_train_does_not_import_textual(real_run):
    proc, _, _ = real_run
    imported = [line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    assert "nktui.cli.train" in imported and "torch" in imported
    assert not [name for name in imported if name.split(".")[0] == "textual"]


def test_config_toml_loads_back_equal(real_run):
    _, run_dir, expected = real_run
    # run_dir is left out, so that `--config run/config.toml` repeats the run into a fresh folder
    assert RunConfig.load(run_dir / "config.toml") == expected.replace(run_dir=None)


def test_metrics_rows_match_the_records(real_run):
    _, run_dir, expected = real_run
    rows = read_metrics(run_dir / "metrics.jsonl")
    steps = [r for r in rows if r["type"] == "step"]
    evals = [r for r in rows if r["type"] == "eval"]
    assert [r["step"] for r in steps] == [20, 40, 60]
    assert [r["step"] for r in evals] == [22, 44, 60]  # every epoch (22 steps) and at the end
    assert set(rows[0]) >= {"type", "step", "epoch", "loss", "accuracy"}

    # The same run, step by step on this thread, gives the records those rows were written from.
    trainer = Trainer(expected)
    names = [name for name, _ in trainer.model.named_parameters()]
    records: dict[int, StepRecord] = {}
    results: dict[int, EvalResult] = {}
    for _ in range(60):
        rec = trainer.step()
        records[rec.step] = rec
        if rec.step in (22, 44, 60):
            results[rec.step] = trainer.evaluate()
    for row in steps:
        rec = records[row["step"]]
        assert set(row) == {"type", "step", "epoch", "loss", "lr", "accuracy", "samples_per_sec", "layers"}
        assert row["epoch"] == rec.epoch and row["lr"] == rec.lr
        assert row["loss"] == pytest.approx(rec.loss, rel=1e-5)
        assert row["accuracy"] == pytest.approx(rec.accuracy)
        assert list(row["layers"]) == names
        for name, stats in row["layers"].items():
            assert set(stats) == {"grad_norm", "update_ratio"}
            assert stats["grad_norm"] == pytest.approx(rec.layers[name].grad_norm, rel=1e-4)
            assert stats["update_ratio"] == pytest.approx(rec.layers[name].update_ratio, rel=1e-4)
    for row in evals:
        result = results[row["step"]]
        assert row["epoch"] == result.epoch
        assert row["loss"] == pytest.approx(result.loss, rel=1e-5)
        assert row["accuracy"] == pytest.approx(result.accuracy)


def test_last_pt_loads_weights_only_and_reproduces_the_summary(real_run):
    proc, run_dir, expected = real_run
    state = torch.load(run_dir / "last.pt", weights_only=True)
    assert state["step"] == 60 and state["epoch"] == 3
    assert state["config"] == expected.to_dict()
    assert not list(run_dir.glob(".last.pt.tmp*"))
    correct, size = map(int, re.search(r"^validation\s.*\((\d+)/(\d+)\)", proc.stdout, re.M).groups())

    trainer = Trainer(RunConfig.from_dict(state["config"]))
    trainer.model.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    result = trainer.evaluate()
    assert (round(result.accuracy * result.size), result.size) == (correct, size)
    assert load_checkpoint(run_dir / "last.pt")["step"] == 60


def test_ctrl_c_stops_at_a_step_saves_and_exits_0(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nktui",
            "train",
            "--steps",
            "1000000",
            "--log-every",
            "10",
            "--device",
            "cpu",
            "--run-dir",
            str(tmp_path / "run"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
        # As from a terminal: SIGINT at its default, even where the suite itself runs as a background job (a shell
        # without job control starts those with SIGINT ignored, and a child would inherit that and train on).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        for line in proc.stdout:  # wait until it trains
            if line.startswith("step "):
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    match = re.search(r"^interrupted at step (\d+) of 1000000", out, re.M)
    assert match, out
    assert re.search(r"^validation\s+loss", out, re.M)
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state["step"] == int(match.group(1))


def test_a_terminal_gets_a_progress_bar(tmp_path):
    import io

    from nktui.cli.train import run_headless

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    config = RunConfig(steps=30, log_every=10, device="cpu", run_dir=str(tmp_path / "run"))
    assert run_headless(config, out=out) == 0
    text = out.getvalue()
    assert "30/30" in text and "lr 0.1" in text and "samples/s" in text and "\x1b[" in text  # drawn by rich
    assert re.search(r"^validation\s+loss", text, re.M)
    assert [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["type"] == "step"] == [10, 20, 30]


# -- bad input: one line, exit code 2, no traceback ---------------------------------------------------------------
BAD_INPUT = {
    "dataset": (["--dataset", "imagenet"], "unknown dataset"),
    "model": (["--model", "resnet"], "unknown model"),
    "optimizer": (["--optimizer", "rmsprop"], "unknown optimizer"),
    "lr zero": (["--lr", "0"], "lr must be greater than 0"),
    "lr negative": (["--lr", "-1"], "lr must be greater than 0"),
    "lr nan": (["--lr", "nan"], "lr must be a finite number"),
    "lr inf": (["--lr", "inf"], "lr must be a finite number"),
    "lr text": (["--lr", "abc"], "lr must be a number"),
    "batch size": (["--batch-size", "0"], "batch_size"),
    "missing data folder": (["--dataset", "mnist", "--data-dir", "{tmp}/nothing", "--no-download"], "not in"),
    "missing image folder": (["--dataset", "imagefolder:{tmp}/nothing"], "does not exist"),
    "custom model import": (["--model", "no_such_package_xyz.models:build"], "cannot import"),
    "custom model file": (["--model", "{tmp}/nope.py:build"], "does not exist"),
    "steps and epochs": (["--steps", "5", "--epochs", "2"], "not both"),
    "config file missing": (["--config", "{tmp}/none.toml"], "does not exist"),
    "malformed int": (["--steps", "many"], "invalid int value"),
    "unknown flag": (["--learning-rate", "0.1"], "unrecognized arguments"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_line_and_exit_2(case, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args, expected = BAD_INPUT[case]
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    rc = cli.main(["train", *args, "--steps" if "--steps" not in args and "--epochs" not in args else "--seed", "3"])
    line = assert_one_line_error(rc, capsys.readouterr().err)
    assert expected in line
    assert not (tmp_path / "runs").exists()  # nothing written for a run that never started


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_cuda_names_the_fix(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "--device", "cuda", "--steps", "3"]) == 2
    out, err = capsys.readouterr()
    line = assert_one_line_error(2, err)
    assert "no CUDA" in line and "--device cpu" in line
    assert out == "" and not (tmp_path / "runs").exists()


def test_bad_lr_in_a_real_process(tmp_path):
    proc = run_nktui("train", "--lr", "nan", cwd=tmp_path)
    assert "finite" in assert_one_line_error(proc.returncode, proc.stderr)


def test_argparse_errors_are_one_line_for_the_app_too():
    proc = run_nktui("--steps", "x")
    assert "--steps" in assert_one_line_error(proc.returncode, proc.stderr)
    proc = run_nktui("train", "--paused")  # --paused belongs to the app
    assert "--paused" in assert_one_line_error(proc.returncode, proc.stderr)


def test_existing_run_dir_is_not_overwritten(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text("{}\n")
    rc = cli.main(["train", "--steps", "3", "--run-dir", str(tmp_path / "run")])
    assert "already holds a run" in assert_one_line_error(rc, capsys.readouterr().err)
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == "{}\n"


# -- flags and --config --------------------------------------------------------------------------------------------
def test_every_runconfig_field_has_a_flag_in_both_parsers():
    import dataclasses

    fields = [f.name for f in dataclasses.fields(RunConfig)]
    assert set(cli.FLAG_HELP) <= set(fields)  # no help for a field that is gone
    for parser in cli.make_parsers():
        dests = {a.dest for a in parser._actions}
        assert set(fields) <= dests
        text = parser.format_help()
        assert all("--" + name.replace("_", "-") in text for name in fields)
    assert "(default: 0.1)" in cli.make_parsers()[1].format_help()


def test_flags_build_a_config_and_defaults_do_not_override():
    config, options = cli.build_config(
        [
            "train",
            "--model",
            "mlp",
            "--hidden",
            "16,8",
            "--lr",
            "1e-3",
            "--optimizer",
            "adam",
            "--no-download",
            "--activations",
            "--epochs",
            "2",
        ]
    )
    assert options.command == "train"
    assert config == RunConfig(
        model="mlp", hidden=(16, 8), lr=0.001, optimizer="adam", download=False, activations=True, epochs=2
    )
    config, options = cli.build_config([])
    assert (config, options) == (RunConfig(), cli.Options(command="app", paused=False))


def test_config_file_is_the_base_and_flags_override_it(tmp_path):
    path = tmp_path / "run.toml"
    RunConfig(model="mlp", lr=0.05, momentum=0.9, nesterov=True, steps=10, seed=7).save(path)
    config, options = cli.build_config(["--paused", "--config", str(path), "--lr", "0.2", "--epochs", "3"])
    assert options == cli.Options(command="app", paused=True)
    assert config == RunConfig(model="mlp", lr=0.2, momentum=0.9, nesterov=True, epochs=3, seed=7)
    config, _ = cli.build_config(["train", "--config", str(path), "--no-nesterov", "--momentum", "0"])
    assert (config.nesterov, config.momentum, config.steps, config.lr) == (False, 0.0, 10, 0.05)
    path.write_text('model = "mlp"\nlearning_rate = 0.1\n')
    with pytest.raises(ConfigError, match="unknown setting 'learning_rate'"):
        cli.build_config(["--config", str(path)])


def test_app_path_calls_run_app_with_the_config(monkeypatch, capsys):
    calls = []
    fake = types.ModuleType("nktui.ui.app")
    fake.run_app = lambda config, paused=False: calls.append((config, paused)) or 0
    fake.run_attached = lambda client, early=None: calls.append(("attached", client)) or 0
    monkeypatch.setitem(sys.modules, "nktui.ui.app", fake)
    assert cli.main(["--in-process", "--paused", "--model", "cnn"]) == 0
    assert calls == [(RunConfig(model="cnn", steps=APP_DEFAULT_STEPS), True)]  # the app's run goes on until stopped
    # Without --in-process: a run process with the same flags, and the app attached to it.
    from nktui.host import remote, spawn

    started, killed = [], []
    process = types.SimpleNamespace(kill=lambda: killed.append(1))
    monkeypatch.setattr(spawn, "spawn", lambda args: started.append(args) or process)
    monkeypatch.setattr(spawn, "wait_ready", lambda p: (Path("runs/x"), 1))
    monkeypatch.setattr(remote.RemoteRunClient, "connect", classmethod(lambda cls, path: f"client of {path}"))
    assert cli.main(["--paused", "--model", "cnn"]) == 0
    assert started == [["--paused", "--model", "cnn"]] and calls[-1] == ("attached", "client of runs/x/nktui.sock")
    monkeypatch.setitem(sys.modules, "nktui.ui.app", None)  # the app is not there: one clear line
    assert cli.main([]) == 1 and killed == [1]  # (and the run process started meanwhile is gone)
    err = capsys.readouterr().err
    assert err.startswith("nktui: error: ") and "nktui train" in err and len(err.splitlines()) == 1


def test_help_works_and_importing_the_cli_skips_torch_and_textual():
    proc = run_nktui("--help", python_flags=("-X", "importtime"))
    assert proc.returncode == 0 and "nktui train" in proc.stdout and "--paused" in proc.stdout
    assert not re.search(r"\|\s+(torch|textual)$", proc.stderr, re.MULTILINE)  # --help stays instant
    proc = run_nktui("train", "--help")
    assert proc.returncode == 0 and "--steps" in proc.stdout and "--no-download" in proc.stdout
    code = "import sys, nktui.cli; print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'textual'}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"


# -- run directory pieces ------------------------------------------------------------------------------------------
def test_default_run_dir_is_dated_and_never_reused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    now = time.mktime((2025, 1, 2, 3, 4, 5, 0, 0, -1))
    first = default_run_dir(now=now)
    assert first == Path("runs/20250102-030405")
    first.mkdir(parents=True)
    assert default_run_dir(now=now) == Path("runs/20250102-030405-2")
    assert choose_run_dir(RunConfig()).parent == Path("runs")


def test_non_finite_numbers_are_written_as_null(tmp_path):
    layer = LayerStats("fc.weight", (2, 2), math.nan, 0.0, 0.0, 0.0, 0.0, 1.0, 4)
    record = StepRecord(10, 1, math.inf, 0.5, 0.1, None, frozen_mapping({"fc.weight": layer}))
    row = step_row(record)
    assert row["loss"] is None and row["layers"]["fc.weight"] == {"grad_norm": None, "update_ratio": None}
    with MetricsWriter(tmp_path / "m.jsonl", log_every=5) as writer:
        assert writer.write([record, record._replace(step=11)]) == 1  # step 11 is not a logged step
    text = (tmp_path / "m.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text)["loss"] is None


def test_checkpoint_write_is_atomic_and_bad_files_are_refused(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_save({"format": "nktui-checkpoint", "step": 1}, path)

    def crash(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        atomic_save({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_a_reader_that_goes_away_stops_the_run_cleanly(tmp_path):
    """`nktui train | head -3`: the pipe closes under the progress lines. No traceback: the run stops at a step
    boundary, saves last.pt and exits 0, as on a stop signal."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nktui", "train", "--steps", "1000000", "--log-every", "1", "--run-dir",
         str(tmp_path / "run")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path,
    )
    for _ in range(3):  # the header, the run directory and a progress line
        assert proc.stdout.readline()
    proc.stdout.close()  # the reader goes away
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and b"Traceback" not in err, err.decode()
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert 0 < state["step"] < 1000000
