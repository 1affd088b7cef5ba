"""The renderers (nktui.render) are Rich only: importing the package and every module in it loads neither torch nor
Textual, so `nktui eval` can print the app's tables without either, and the app can draw before torch is loaded."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import nktui.render

ROOT = Path(__file__).resolve().parents[1]


def test_importing_every_renderer_loads_neither_torch_nor_textual():
    modules = sorted(f"nktui.render.{m.name}" for m in pkgutil.iter_modules(nktui.render.__path__))
    assert {"nktui.render.braille", "nktui.render.format", "nktui.render.heatmap"} <= set(modules)
    code = (
        "import importlib, json, sys\n"
        f"for name in ['nktui.render', *{modules!r}]:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'textual'})))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
