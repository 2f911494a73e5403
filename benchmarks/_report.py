"""Table printing shared by the benchmark scripts (plain text or markdown)."""

from __future__ import annotations


def table(headers: list[str], rows: list[list[str]], markdown: bool) -> list[str]:
    """The lines of a table: markdown, or plain text with the first column left-aligned."""
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        return lines + ["| " + " | ".join(row) + " |" for row in rows]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest])

    return [line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]
