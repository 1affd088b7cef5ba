"""Random combinations of bad flags (seeded): every one is exit code 2, exactly one stderr line starting with
`nktui: error:`, no traceback and no run directory; in-process through `nktui.cli.main` for speed, and a few in
real processes."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from nktui import cli

ROOT = Path(__file__).resolve().parents[1]

BAD = [  # each of these alone is refused
    ["--seed", "-1"], ["--seed", str(2**63)], ["--seed", "1e3"], ["--lr", "0"], ["--lr", "nan"], ["--lr", ""],
    ["--lr", "fast"], ["--momentum", "1"], ["--momentum", "-0.5"], ["--batch-size", "0"], ["--batch-size", "5000"],
    ["--steps", "0"], ["--steps", "many"], ["--epochs", "-1"], ["--val-fraction", "1"], ["--image-size", "0"],
    ["--hidden", ""], ["--hidden", "128,,64"], ["--hidden", "a,b"], ["--hidden", "0"], ["--model", "resnet"],
    ["--model", "mlp", "--hidden", "10000000000"], ["--model", "no_such_package_xyz:build"],
    ["--model", "{tmp}/missing.py:build"], ["--model", "{tmp}/three.py:build"], ["--dataset", "imagenet"],
    ["--dataset", "imagefolder:"], ["--dataset", "imagefolder:{tmp}/nothing"],
    ["--dataset", "mnist", "--data-dir", "{tmp}/nothing", "--no-download"], ["--optimizer", "rmsprop"],
    ["--activation", "gelu"], ["--device", "tpu"], ["--nesterov"], ["--watch-ratio-low", "2", "--watch-ratio-high", "1"],
    ["--watch-dead-relu", "5"], ["--watch-loss-jump", "-1"], ["--run-dir", ""], ["--run-dir", "{tmp}/" + "x" * 300],
    ["--config", ""], ["--config", "/dev/zero"], ["--config", "{tmp}/missing.toml"], ["--config", "{tmp}/bad.toml"],
    ["--resume", ""], ["--resume", "{tmp}/nothing.pt"], ["--resume", "{tmp}/junk.pt"], ["--log-every", "0"],
    ["--threads", "-2"], ["--rewind-depth", "-1"], ["--eval-every", "x"], ["--learning-rate", "0.1"],
]
GOOD = [  # and these are fine
    ["--lr", "0.05"], ["--seed", "7"], ["--batch-size", "16"], ["--model", "mlp"], ["--hidden", "32"],
    ["--optimizer", "adam"], ["--no-watch"], ["--activations"], ["--steps", "5"], ["--threads", "1"],
]


def combinations(n: int, seed: int) -> list[list[list[str]]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        bad = rng.sample(BAD, rng.randint(1, 3))
        named = {a for flags in bad for a in flags if a.startswith("--")}
        good = [g for g in rng.sample(GOOD, rng.randint(0, 2)) if g[0] not in named]  # (the last flag given wins)
        out.append(bad + good)
    return out


@pytest.fixture
def tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.toml").write_text("lr = = 3\n")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    (tmp_path / "three.py").write_text(
        "from torch import nn\ndef build(input_shape, num_classes):\n    return nn.Sequential(nn.Flatten(), "
        "nn.Linear(64, 3))\n"
    )
    return tmp_path


def flat(combo: list[list[str]], tmp: Path) -> list[str]:
    return [a.replace("{tmp}", str(tmp)) for flags in combo for a in flags]


def assert_refused(code: int, err: str, args: list[str]) -> None:
    lines = err.splitlines()
    assert code == 2, (args, err)
    assert "Traceback" not in err, (args, err)
    assert len(lines) == 1 and lines[0].startswith("nktui: error:"), (args, err)


def test_each_bad_flag_alone_is_refused(tmp, capsys):
    for flags in BAD:
        args = ["train", "--device", "cpu", *flat([flags], tmp)]
        code = cli.main(args)
        assert_refused(code, capsys.readouterr().err, args)
    assert not (tmp / "runs").exists()


@pytest.mark.parametrize("chunk", range(4))
def test_random_combinations_of_bad_flags_are_refused_in_one_line(chunk, tmp, capsys):
    for combo in combinations(60, seed=12)[chunk * 15:(chunk + 1) * 15]:
        args = ["train", "--device", "cpu", *flat(combo, tmp)]
        code = cli.main(args)
        assert_refused(code, capsys.readouterr().err, args)
    assert not (tmp / "runs").exists()


def test_random_combinations_in_real_processes(tmp):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for combo in combinations(4, seed=99):
        args = ["train", "--device", "cpu", *flat(combo, tmp)]
        proc = subprocess.run([sys.executable, "-m", "nktui", *args], capture_output=True, text=True, env=env,
                              cwd=tmp, timeout=120)
        assert_refused(proc.returncode, proc.stderr, args)
    assert not (tmp / "runs").exists()
