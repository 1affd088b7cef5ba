"""Exports: metrics.csv and TensorBoard event files next to metrics.jsonl, written from the trainer's records.

The CSV and the JSONL must hold the same rows, and both must hold what the records say; the TensorBoard files are
read back with TensorBoard's own reader. Tests that need the tensorboard package skip without it (it is in the
`test` extra, so CI runs them). The last test runs `nktui train` on the example model from examples/my_model.py
with every export on, in a subprocess, as a user would.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nktui import cli
from nktui.protocol.errors import ConfigError
from nktui.protocol.records import EvalResult, Histogram, LayerStats, StepRecord, WatchHit, frozen_mapping
from nktui.run import exporters
from nktui.training import RunConfig
from nktui.run.exporters import (
    CsvWriter,
    TensorBoardWriter,
    csv_header,
    open_writers,
    read_csv,
    tensorboard_histogram,
)
from nktui.run.rundir import choose_run_dir, create_run_dir, read_metrics

ROOT = Path(__file__).resolve().parents[1]


def needs_tensorboard():
    pytest.importorskip("tensorboard", reason="tensorboard is not installed: pip install 'nktui[tensorboard]'")


def event_accumulator(path: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(path), size_guidance={"scalars": 0, "histograms": 0})  # 0: keep every event
    acc.Reload()
    return acc


@pytest.fixture
def trained(make_trainer):
    """A trainer after 12 observed steps with histograms and two validations; its records, oldest first."""
    trainer = make_trainer(model="mlp", hidden=(16,), log_every=4)
    trainer.instruments.histogram_bins = 8
    for _ in range(6):
        trainer.step()
    trainer.evaluate()
    for _ in range(6):
        trainer.step()
    trainer.evaluate()
    trainer.flush()
    _, records = trainer.records.since(0)
    assert sum(isinstance(r, StepRecord) for r in records) == 12
    return trainer, records


# -- metrics.csv -----------------------------------------------------------------------------------------------------
def test_csv_and_jsonl_hold_the_same_rows_as_the_records(tmp_path, trained):
    trainer, records = trained
    config = trainer.config.replace(csv=True)
    with open_writers(tmp_path, config, trainer.instruments.names) as writers:
        writers.write(records[:7])  # in two batches, as a reader polling twice would
        writers.write(records[7:])
        assert writers.files == ("metrics.jsonl", "metrics.csv")
    jsonl = read_metrics(tmp_path / "metrics.jsonl")
    table = read_csv(tmp_path / "metrics.csv")
    layers = trainer.instruments.names
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[:6] == ["step", "epoch", "loss", "accuracy", "lr", "samples_per_sec"]
    assert header == csv_header(layers) and "fc1.weight/grad_norm" in header and "out.bias/update_ratio" in header

    logged = [r for r in records if (isinstance(r, StepRecord) and r.step % 4 == 0) or isinstance(r, EvalResult)]
    assert [r.step for r in logged] == [4, 6, 8, 12, 12]  # steps 4, 8, 12 and the validations after 6 and 12
    assert len(jsonl) == len(table) == len(logged)
    for record, row, cells in zip(logged, jsonl, table):
        assert cells["step"] == row["step"] == record.step and cells["epoch"] == row["epoch"] == record.epoch
        if isinstance(record, EvalResult):
            assert row["type"] == "eval"
            assert cells["val_loss"] == row["loss"] == pytest.approx(record.loss, rel=1e-12)
            assert cells["val_accuracy"] == row["accuracy"] == record.accuracy
            assert cells["loss"] is None and cells["lr"] is None and cells["fc1.weight/grad_norm"] is None
            continue
        assert row["type"] == "step"
        for key in ("loss", "accuracy", "lr", "samples_per_sec"):
            assert cells[key] == row[key] == getattr(record, key)  # repr() in the CSV: the exact float back
        assert cells["val_loss"] is None
        for name in layers:
            stats = record.layers[name]
            assert cells[f"{name}/grad_norm"] == row["layers"][name]["grad_norm"] == stats.grad_norm
            assert cells[f"{name}/update_ratio"] == row["layers"][name]["update_ratio"] == stats.update_ratio


def layer(name: str, grad_norm: float = 1.0, histogram: Histogram | None = None, shape=(2, 2)) -> LayerStats:
    return LayerStats(name, shape, grad_norm, 0.25, 0.1, 0.5, 2.0, 0.02, 0, histogram)


def test_csv_leaves_non_finite_values_empty_and_skips_events(tmp_path):
    path = tmp_path / "metrics.csv"
    writer = CsvWriter(path, log_every=1, layers=("a", "b"))
    diverged = StepRecord(1, 1, math.nan, 0.5, 0.1, None, frozen_mapping({"a": layer("a", math.inf), "b": layer("b")}))
    hit = WatchHit("grad_jump", 1, "a", math.inf, 10.0, "a blew up")
    assert writer.write([diverged, hit]) == 1  # the watchpoint hit is an event, not a metrics row
    writer.close()
    (row,) = read_csv(path)
    assert row["loss"] is None and row["samples_per_sec"] is None and row["a/grad_norm"] is None
    assert row["accuracy"] == 0.5 and row["b/grad_norm"] == 1.0 and row["b/update_ratio"] == pytest.approx(0.01)
    # appending to an existing file (a second writer on the same run) does not repeat the header
    CsvWriter(path, log_every=1, layers=("a", "b")).close()
    assert path.read_text().count("step,epoch") == 1


# -- TensorBoard -----------------------------------------------------------------------------------------------------
def test_histogram_conversion_matches_tensorboards_format():
    stats = layer("w", grad_norm=3.0, histogram=Histogram(-1.0, 1.0, (1, 0, 2, 1)))
    h = tensorboard_histogram(stats)
    # one empty bucket that ends at the minimum, then our four bins by their right edges
    assert h["bucket_limits"] == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert h["bucket_counts"] == [0, 1, 0, 2, 1]
    assert (h["min"], h["max"], h["num"]) == (-1.0, 1.0, 4)
    assert h["sum"] == pytest.approx(0.25 * 4) and h["sum_squares"] == pytest.approx(9.0)
    flat = tensorboard_histogram(layer("w", histogram=Histogram(0.5, 0.5, (4, 0, 0))))
    assert flat["bucket_limits"] == [0.5, 0.5] and flat["bucket_counts"] == [0, 4]  # every value the same
    assert tensorboard_histogram(layer("w")) is None  # no histogram on this step


def test_tensorboard_events_read_back_with_tensorboards_reader(tmp_path, trained):
    needs_tensorboard()
    trainer, records = trained
    writer = TensorBoardWriter(tmp_path, log_every=4)
    writer.write(records)
    writer.close()
    acc = event_accumulator(tmp_path)
    tags = acc.Tags()
    layers = trainer.instruments.names
    expected = {"train/loss", "train/accuracy", "train/lr", "val/loss", "val/accuracy"}
    expected |= {f"grad_norm/{n}" for n in layers} | {f"update_ratio/{n}" for n in layers}
    assert expected <= set(tags["scalars"])
    assert set(tags["histograms"]) == {f"grad/{n}" for n in layers}
    steps = {r.step: r for r in records if isinstance(r, StepRecord)}
    loss = acc.Scalars("train/loss")
    assert [e.step for e in loss] == [4, 8, 12]
    assert [e.value for e in loss] == pytest.approx([steps[s].loss for s in (4, 8, 12)], rel=1e-6)
    ratio = acc.Scalars("update_ratio/fc1.weight")
    assert [e.value for e in ratio] == pytest.approx([steps[s].layers["fc1.weight"].update_ratio for s in (4, 8, 12)],
                                                     rel=1e-6)
    evals = [r for r in records if isinstance(r, EvalResult)]
    val = acc.Scalars("val/accuracy")
    assert [(e.step, e.value) for e in val] == [(r.step, pytest.approx(r.accuracy, rel=1e-6)) for r in evals]
    hist = acc.Histograms("grad/fc1.weight")
    assert [h.step for h in hist] == [4, 8, 12]
    value = hist[-1].histogram_value
    stats = steps[12].layers["fc1.weight"]
    assert sum(value.bucket) == value.num == stats.numel  # every gradient value is in a bucket
    assert value.min == pytest.approx(stats.histogram.lo) and value.max == pytest.approx(stats.histogram.hi)


def test_tensorboard_missing_is_a_one_line_error_before_anything_runs(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(exporters, "tensorboard_available", lambda: False)
    with pytest.raises(ConfigError, match=r"pip install 'nktui\[tensorboard\]'"):
        exporters.check_exports(RunConfig(tensorboard=True))
    exporters.check_exports(RunConfig(csv=True))  # the CSV needs nothing extra
    rc = cli.main(["train", "--tensorboard", "--steps", "3", "--device", "cpu", "--run-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "nktui: error: --tensorboard needs the tensorboard package" in err
    assert not (tmp_path / "r").exists()  # nothing was started or written


# -- config files --------------------------------------------------------------------------------------------------
def test_export_flags_override_the_config_file_and_a_run_config_repeats(tmp_path):
    path = tmp_path / "run.toml"
    RunConfig(csv=True, tensorboard=True, steps=5).save(path)
    config, _ = cli.build_config(["train", "--config", str(path), "--no-tensorboard"])
    assert (config.csv, config.tensorboard, config.steps) == (True, False, 5)
    config, _ = cli.build_config(["--config", str(path), "--no-csv"])
    assert (config.csv, config.tensorboard) == (False, True)
    # A run directory's config.toml leaves run_dir out: --config of it repeats the run into a fresh folder
    run = tmp_path / "runs" / "first"
    create_run_dir(run, RunConfig(steps=5, run_dir=str(run)))
    again, _ = cli.build_config(["train", "--config", str(run / "config.toml")])
    assert again == RunConfig(steps=5)
    (run / "metrics.jsonl").write_text("")
    assert choose_run_dir(again) != run  # a fresh runs/<date-time>/, not "already holds a run"


# -- the whole path: nktui train on your own model, every export on ------------------------------------------------
def test_nktui_train_on_the_example_model_writes_every_export(tmp_path):
    has_tensorboard = exporters.tensorboard_available()
    run_dir = tmp_path / "run"
    args = ["train", "--model", "examples/my_model.py:build", "--steps", "30", "--log-every", "10", "--device", "cpu",
            "--csv", "--run-dir", str(run_dir)]
    if has_tensorboard:
        args.append("--tensorboard")
    proc = subprocess.run([sys.executable, "-m", "nktui", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "finished 30 steps" in proc.stdout and "model examples/my_model.py:build" in proc.stdout
    (where,) = [line for line in proc.stdout.splitlines() if line.startswith("run directory:") and "(" in line]
    assert "metrics.jsonl, metrics.csv" in where  # the summary lists what was written
    jsonl = read_metrics(run_dir / "metrics.jsonl")
    table = read_csv(run_dir / "metrics.csv")
    steps = [row for row in jsonl if row["type"] == "step"]
    assert [row["step"] for row in steps] == [10, 20, 30]
    assert len(table) == len([row for row in jsonl if row["type"] in ("step", "eval")])
    conv = "features.0.weight"  # the example's convolution: a row per layer, named as in named_parameters()
    for row, cells in zip((r for r in jsonl if r["type"] in ("step", "eval")), table):
        assert cells["step"] == row["step"]
        if row["type"] == "step":
            assert cells["loss"] == row["loss"] and cells[f"{conv}/grad_norm"] == row["layers"][conv]["grad_norm"] > 0
    if has_tensorboard:
        acc = event_accumulator(run_dir)
        assert [e.step for e in acc.Scalars("train/loss")] == [10, 20, 30]
        assert f"grad/{conv}" in acc.Tags()["histograms"]  # --tensorboard turned histograms on
        assert acc.Scalars("val/loss")[-1].step == 30
