"""Which characters the app draws with: Unicode (box drawing, braille, blocks, arrows) or plain ASCII.

Decided once, when the app starts (`decide()`, from `NktuiApp.__init__`), never per frame; whatever draws reads
`ascii_mode()` (a module global) or passes its labels through `text()`. The decision, first rule that applies:

- `NKTUI_ASCII=1` (or true, yes, on) forces ASCII; `NKTUI_ASCII=0` (false, no, off) forces Unicode;
- the locale's character set is not UTF-8: the first of `LC_ALL`, `LC_CTYPE`, `LANG` that is set names `C`,
  `POSIX` or a locale without UTF-8 (`en_US.ISO-8859-1`). The variables are read rather than the encoding Python
  chose, because Python 3.7 and later switch themselves to UTF-8 under the C locale (PEP 538, PEP 540) while the
  terminal stays what it was. With none of them set, the output stream's encoding decides;
- the output stream's encoding (`sys.__stdout__`) is not UTF-8;
- `TERM` names a terminal that cannot draw these characters: `dumb`, `vt52`..`vt320`, `ansi`, the Linux console
  (`linux`: its fonts have boxes but no braille) and the like, with or without a `-suffix`.

In ASCII mode the borders are `ascii` (the app's class `-ascii`, rules in app.tcss), the loss plot marks each cell
with `'`, `-`, `.` or `|` by where its dots would be, sparklines use ` .:-=+*#@`, signed heat maps the glyphs of
`ASCII_POSITIVE` and `ASCII_NEGATIVE`, and labels lose their arrows, ellipses and norms (`ASCII_LABELS`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

ENV = "NKTUI_ASCII"
ASCII_TERMS = frozenset({"dumb", "unknown", "vt52", "vt100", "vt102", "vt200", "vt220", "vt320", "ansi", "linux",
                         "cons25", "wsvt25", "sun", "pcansi"})

# Labels: one ASCII character for each (a column keeps its width), or a few where the text is free-running.
ASCII_LABELS = str.maketrans({
    "‖": "|", "←": "<", "→": ">", "↑": "^", "↓": "v", "◀": "<", "▶": ">", "▲": "^", "▼": "v",
    "…": "~", "·": "-", "×": "x", "÷": "/", "−": "-", "±": "+-", "≈": "~", "≤": "<=", "≥": ">=",
    "▪": "#", "●": "o", "•": "o", "◆": "@", "█": "#", "▀": "#", "▄": "#", "░": ".", "▒": ":", "▓": "%",
    "≡": "=", "⌫": "<", "–": "-", "—": "-", "’": "'", "“": '"', "”": '"',
})
ASCII_SPARK = " .:-=+*#@"
ASCII_POSITIVE = "+*#@"  # signed heat maps: small to large positive values
ASCII_NEGATIVE = "-~=%"  # ...and negative ones

_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}
_ascii = False  # Unicode until the app decides


def forced(env: Mapping[str, str]) -> bool | None:
    """NKTUI_ASCII as True (ASCII), False (Unicode) or None (not set, or not a yes or a no)."""
    value = env.get(ENV, "").strip().lower()
    return True if value in _TRUE else False if value in _FALSE else None


def _utf8(name: str) -> bool:
    return name.lower().replace("-", "").replace("_", "") in {"utf8", "cp65001"}


def locale_utf8(env: Mapping[str, str]) -> bool | None:
    """Whether the locale the environment names is UTF-8; None when no locale variable is set."""
    for var in ("LC_ALL", "LC_CTYPE", "LANG"):
        value = env.get(var, "")
        if value:
            charset = value.partition(".")[2].partition("@")[0]
            return bool(charset) and _utf8(charset)
    return None


def terminal_unicode(term: str) -> bool:
    """False for a TERM without Unicode glyphs (vt100, dumb, linux, vt220-am...)."""
    name = term.strip().lower()
    return not (name in ASCII_TERMS or name.partition("-")[0] in ASCII_TERMS)


def unicode_ok(env: Mapping[str, str] | None = None, encoding: str | None = None) -> bool:
    """Whether this terminal can be drawn in Unicode (see the module's rules); `encoding`: the output stream's."""
    env = os.environ if env is None else env
    choice = forced(env)
    if choice is not None:
        return not choice
    if encoding is None:
        stream = sys.__stdout__
        encoding = getattr(stream, "encoding", None) or "utf-8"
    if locale_utf8(env) is False or not _utf8(encoding):
        return False
    return terminal_unicode(env.get("TERM", ""))


def decide(env: Mapping[str, str] | None = None, encoding: str | None = None) -> bool:
    """Decide for this process (the app's start-up); returns True for ASCII."""
    set_ascii(not unicode_ok(env, encoding))
    return _ascii


def set_ascii(on: bool) -> None:
    global _ascii
    _ascii = bool(on)


def ascii_mode() -> bool:
    return _ascii


def text(label: str) -> str:
    """A label as this terminal can show it: unchanged in Unicode, its arrows, norms and ellipses in ASCII."""
    return label.translate(ASCII_LABELS) if _ascii else label


def cell_table() -> dict[int, str]:
    """For `to_ascii`: a single character for each character `ASCII_LABELS` knows (a column keeps its width), and
    for box drawing, block elements and braille by their shape: `-`, `|`, `+`, `_`, `#`, `.`."""
    import unicodedata

    table = {k: v[0] for k, v in ASCII_LABELS.items()}
    for code in range(0x2500, 0x2580):  # box drawing
        name = unicodedata.name(chr(code), "")
        horizontal, vertical = "HORIZONTAL" in name, "VERTICAL" in name
        table.setdefault(code, "-" if horizontal and not vertical else "|" if vertical and not horizontal else "+")
    for code in range(0x2580, 0x25A0):  # block elements
        name = unicodedata.name(chr(code), "")
        thin = "EIGHTH" in name or "QUARTER" in name and "BLOCK" in name and "QUADRANT" not in name
        line = ("_" if "LOWER" in name else "-" if "UPPER" in name else "|") if thin else "#"
        table.setdefault(code, line if "SHADE" not in name else ":")
    table[0x2800] = " "
    for code in range(0x2801, 0x2900):  # braille
        table[code] = "."
    return table


_CELLS: dict[int, str] | None = None


def to_ascii(data: str) -> str:
    """Any text in ASCII, cell for cell: `cell_table`'s replacements, then `?` for whatever else is outside ASCII
    (`??` for a double-width character). What the ASCII driver writes (`nktui.ui.ascii_terminal`)."""
    global _CELLS
    if data.isascii():
        return data
    if _CELLS is None:
        _CELLS = cell_table()
    out = data.translate(_CELLS)
    if out.isascii():
        return out
    from rich.cells import get_character_cell_size

    return "".join(c if c.isascii() else "?" * max(get_character_cell_size(c), 1) for c in out)
