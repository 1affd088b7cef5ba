"""The evaluation as Rich renderables: a summary line, the confusion matrix coloured by count, the per-class
table, and the most confidently wrong examples drawn as pictures. Shared by the evaluation screen and
`nktui eval` (which prints them), so both show the same tables. Pure Rich: no Textual, no tensors.
"""

from __future__ import annotations

from rich.console import Group
from rich.style import Style
from rich.table import Table
from rich.text import Text

from nktui.protocol import EvalResult, Evaluation
from nktui.render.format import number
from nktui.render.heatmap import image, tile

IMAGE_MIN_WIDTH = 16  # small images (8x8 digits) are enlarged to at least this many columns


def summary(ev: Evaluation) -> Text:
    r = ev.result
    correct = sum(r.confusion[k][k] for k in range(len(r.confusion)))
    text = Text()
    text.append(f"{'validation' if r.split == 'val' else 'training'} set", style="bold")
    text.append(f", step {r.step}: ")
    text.append("loss ", style="dim")
    text.append(number(r.loss, 4), style="bold")
    text.append("  accuracy ", style="dim")
    text.append(f"{r.accuracy:.2%}", style="bold green")
    text.append(f" ({correct} of {r.size})", style="dim")
    return text


def _short(name: str, width: int) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def class_label(index: int, classes: tuple[str, ...], width: int = 18) -> str:
    """`3` for a class named by its number (digits), `3 cat` otherwise."""
    name = str(classes[index])
    return _short(name if name == str(index) else f"{index} {name}", width)


def confusion_table(result: EvalResult) -> Group:
    """Rows: the true class; columns: the predicted class (by number). The diagonal is green, the mistakes red,
    each the brighter the larger its share of the row."""
    k = len(result.classes)
    table = Table(box=None, padding=(0, 1), collapse_padding=True, show_edge=False, pad_edge=False)
    label_width = min(max(len(class_label(i, result.classes)) for i in range(k)), 16) if k else 4
    label_width = max(label_width, len("true\\pred"))
    table.add_column("true\\pred", style="dim", no_wrap=True, min_width=label_width)
    width = max(3, len(str(max((v for row in result.confusion for v in row), default=0))))
    for j in range(k):
        table.add_column(str(j), justify="right", min_width=width, no_wrap=True)
    for i, row in enumerate(result.confusion):
        total = sum(row) or 1
        cells = []
        for j, count in enumerate(row):
            share = count / total
            if count == 0:
                cells.append(Text("·", style="dim"))
                continue
            level = 0.35 + 0.65 * share
            rgb = (0, round(220 * level), round(90 * level)) if i == j else (round(255 * level), round(70 * level), 40)
            cells.append(Text(str(count), style=Style(color=f"rgb({rgb[0]},{rgb[1]},{rgb[2]})", bold=share >= 0.5)))
        table.add_row(class_label(i, result.classes, label_width), *cells)
    title = Text("Confusion matrix", style="bold") + Text(" (row: true, column: predicted)", style="dim")
    return Group(title, table)


def class_table(ev: Evaluation) -> Group:
    table = Table(box=None, padding=(0, 1), show_edge=False, pad_edge=False)
    table.add_column("class", style="dim", no_wrap=True, max_width=18)
    for name in ("n", "precision", "recall", "accuracy"):
        table.add_column(name, justify="right", no_wrap=True)
    for i, m in enumerate(ev.classes):
        recall_style = "red" if m.recall is not None and m.recall < 0.5 else ""
        table.add_row(
            class_label(i, ev.result.classes),
            str(m.support),
            _percent(m.precision),
            Text(_percent(m.recall), style=recall_style),
            _percent(m.accuracy),
        )
    title = Text("Per class", style="bold") + Text(" (accuracy: one vs rest)", style="dim")
    return Group(title, table)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def wrong_examples(ev: Evaluation, width: int) -> Text:
    """The confidently wrong examples side by side, wrapped to `width`: picture, then true and predicted class and
    the probability the model gave its (wrong) prediction."""
    title = Text(f"Most confidently wrong ({len(ev.wrong)})", style="bold")
    if not ev.wrong:
        return title + Text("\nno mistakes on this split", style="dim")
    classes = ev.result.classes
    low, high = ev.pixel_range
    first = ev.wrong[0].pixels
    image_width = len(first[0][0]) if first and first[0] else 1
    zoom = max(1, -(-IMAGE_MIN_WIDTH // image_width)) if image_width < IMAGE_MIN_WIDTH else 1
    cell = max(image_width * zoom, 12)
    pictures, labels = [], []
    for ex in ev.wrong:
        lines = image(ex.pixels, low, high, zoom)
        lines = [line + Text(" " * (cell - len(line))) for line in lines]
        lines.append(Text(_short(f"true {classes[ex.true]}", cell).ljust(cell), style="green"))
        lines.append(Text(_short(f"pred {classes[ex.predicted]}", cell).ljust(cell), style="red"))
        pictures.append(lines)
        labels.append(f"p={ex.probability:.2f} #{ex.index}")
    return Text("\n").join([title, tile(pictures, labels, width, gap=2)])

