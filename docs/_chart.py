"""Draw the benchmark charts of ``benchmarks.md`` as SVG files, from its own tables.

Usage: ``python docs/_chart.py docs/benchmarks.md docs/_static`` (the docs build runs it).

A table is charted when the line just before it is a comment
``<!-- chart: NAME.svg | TITLE | UNIT | COLUMN, COLUMN... -->``: one group of horizontal
bars per row (labelled by its first cell), one bar per named column, whose length is the
first number in the cell (``**9.54** (39.8x)`` is 9.54; an empty cell draws no bar).  So the
chart always shows the figures the page prints.
"""

from __future__ import annotations

import html
import re
import sys
from pathlib import Path

MARKER = re.compile(r"^<!-- chart: (?P<file>[\w.-]+\.svg) \| (?P<title>[^|]+) \| (?P<unit>[^|]+) "
                    r"\| (?P<columns>[^|]+) -->$")
NUMBER = re.compile(r"\d+(?:\.\d+)?")
COLOURS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3"]

ROW_HEIGHT = 14
GROUP_GAP = 10
LABEL_WIDTH = 290
PLOT_WIDTH = 420
TOP = 58


def cells(line: str) -> list[str]:
    """The cells of one Markdown table row, stripped of Markdown emphasis and code marks."""
    return [re.sub(r"[*`]", "", cell).strip() for cell in line.strip().strip("|").split("|")]


def number(cell: str) -> float | None:
    """The first number in *cell*, or None if it has none."""
    match = NUMBER.search(cell)
    return float(match.group()) if match else None


def tables(text: str) -> list[tuple[dict[str, str], list[str], list[list[str]]]]:
    """Each charted table: its marker's fields, its header cells and its body rows."""
    found = []
    lines = text.splitlines()
    for index, line in enumerate(lines):
        match = MARKER.match(line.strip())
        if not match:
            continue
        header = cells(lines[index + 1])
        body = []
        for row in lines[index + 3:]:
            if not row.startswith("|"):
                break
            body.append(cells(row))
        found.append((match.groupdict(), header, body))
    return found


def svg(
    title: str, unit: str, series: list[str], rows: list[tuple[str, list[float | None]]]
) -> str:
    """A grouped horizontal bar chart: one group per row, one bar per series."""
    top = max((v for _, values in rows for v in values if v is not None), default=1.0)
    group = ROW_HEIGHT * len(series) + GROUP_GAP
    height = TOP + group * len(rows) + 34
    width = LABEL_WIDTH + PLOT_WIDTH + 70
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="10" y="18" font-size="14" font-weight="bold">{html.escape(title)}</text>',
    ]
    for i, name in enumerate(series):  # legend
        x = 10 + i * 190
        out.append(f'<rect x="{x}" y="30" width="10" height="10" fill="{COLOURS[i % 5]}"/>')
        out.append(f'<text x="{x + 14}" y="39">{html.escape(name)}</text>')
    for r, (label, values) in enumerate(rows):
        y = TOP + r * group
        out.append(f'<text x="{LABEL_WIDTH - 6}" y="{y + group / 2 + 2}" text-anchor="end">'
                   f"{html.escape(label)}</text>")
        for s, value in enumerate(values):
            if value is None:
                continue
            length = PLOT_WIDTH * value / top
            bar_y = y + s * ROW_HEIGHT
            out.append(f'<rect x="{LABEL_WIDTH}" y="{bar_y}" width="{length:.1f}" '
                       f'height="{ROW_HEIGHT - 2}" fill="{COLOURS[s % 5]}"/>')
            out.append(f'<text x="{LABEL_WIDTH + length + 4:.1f}" y="{bar_y + ROW_HEIGHT - 4}">'
                       f"{value:g}</text>")
    axis_y = TOP + group * len(rows)
    out.append(f'<line x1="{LABEL_WIDTH}" y1="{TOP - 4}" x2="{LABEL_WIDTH}" y2="{axis_y}" '
               'stroke="black"/>')
    out.append(f'<text x="{LABEL_WIDTH + PLOT_WIDTH / 2}" y="{axis_y + 20}" '
               f'text-anchor="middle">{html.escape(unit)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    """Write every chart of the page ``argv[0]`` into the directory ``argv[1]``."""
    page, out_dir = Path(argv[0]), Path(argv[1])
    charted = tables(page.read_text(encoding="utf-8"))
    if not charted:
        raise SystemExit(f"{page}: no table is marked for a chart")
    for marker, header, body in charted:
        columns = [c.strip() for c in marker["columns"].split(",")]
        missing = [c for c in columns if c not in header]
        if missing:
            raise SystemExit(f"{page}: {marker['file']}: no column {missing} in {header}")
        indexes = [header.index(c) for c in columns]
        rows = [(row[0], [number(row[i]) for i in indexes]) for row in body]
        drawn = svg(marker["title"].strip(), marker["unit"].strip(), columns, rows)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / marker["file"]).write_text(drawn, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
