"""Rich-only drawing, shared by the app (`nktui.ui`) and `nktui eval`: the braille loss plot, heat maps, contour
maps, number formats and the evaluation tables, with the character set they draw in.

Pure functions from plain Python values to Rich text and segments: nothing here imports Textual or torch
(`tests/test_render_is_pure.py` checks it in a subprocess), so the command line can print what the app shows.

| module | owns |
| --- | --- |
| `charset.py` | Unicode or ASCII, decided once; the labels' ASCII replacements |
| `format.py` | numbers as short text, zero at a tensor's scale, sparklines, the update:weight band, tensor indices |
| `braille.py` | the live loss plot: braille dots straight into Rich segments, axes and labels |
| `heatmap.py` | heat maps and pictures in half blocks; five ANSI colours in 16; glyphs without colour |
| `contour.py` | the loss surface as a contour map with the descent path |
| `eval_tables.py` | the evaluation's summary, confusion matrix, per-class table and worst examples |
"""
