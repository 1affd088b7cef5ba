"""The import contracts in pyproject.toml's [tool.importlinter] hold: `lint-imports`, run on this checkout's nktui.

The layers (cli > ui > host > run > streams, gc_policy, messages > engine | render > probe > protocol > safe_files),
the protocol and the renderers free of torch and Textual, the engine and the probe free of the host and run layers,
the app, the command line and Textual, the run process's side (nktui.host) free of Textual, Rich and the app, the probe free of the engine, the app free of the command line, the engine, the probe and
torch, nothing inside nktui importing the script API's re-export nktui.training, the commands never importing the
package nktui.cli itself, and no import cycle among siblings anywhere in nktui. The contracts' ids are checked too,
so that a contract dropped from pyproject.toml fails here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS = {
    "layers", "protocol", "render", "engine", "probe", "host", "ui", "ui-engine", "script-api", "cli-package", "acyclic",
}


def lint_imports() -> subprocess.CompletedProcess:
    try:
        import importlinter  # noqa: F401
    except ModuleNotFoundError:  # a test dependency, not an optional one: the contracts are checked in CI
        pytest.fail("import-linter is not installed (it is in the test extra): pip install -e '.[test]'")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's nktui, not an installed one
    return subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
         "lint_imports_command()", "--no-cache"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300,
    )  # fmt: skip


def test_the_import_contracts_hold():
    proc = lint_imports()
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"lint-imports failed (exit {proc.returncode}):\n{output}"
    kept = re.search(r"Contracts: (\d+) kept, (\d+) broken", output)
    assert kept and int(kept.group(1)) >= len(CONTRACTS) and kept.group(2) == "0", output


def test_every_contract_is_configured():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert config["root_package"] == "nktui"
    assert {contract["id"] for contract in config["contracts"]} >= CONTRACTS
