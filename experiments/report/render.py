"""Rendering tables: Markdown, LaTeX, and the tables between a Markdown file's ``<!-- table:NAME -->`` markers."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path


def markdown(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table (``|`` in cells escaped)."""
    def row(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    lines = [row(header), "|" + "---|" * len(header)] + [row(r) for r in rows]
    return "\n".join(lines)


def latex(header: list[str], rows: list[list[str]], caption: str) -> str:
    """A booktabs LaTeX table with ``caption``."""
    def esc(s: str) -> str:
        s = s.replace("±", r"$\pm$").replace("×", r"$\times$").replace("—", "--")
        return re.sub(r"([%&#_])", r"\\\1", s).replace("|V|", r"$|V|$")

    cols = "l" + "r" * (len(header) - 1)
    body = [" & ".join(esc(c) for c in header) + r" \\ \midrule"] + [" & ".join(esc(c) for c in r) + r" \\"
                                                                     for r in rows]
    return "\n".join([r"\begin{table}[t]", r"\centering", rf"\caption{{{esc(caption)}}}",
                      rf"\begin{{tabular}}{{{cols}}}", r"\toprule", *body, r"\bottomrule", r"\end{tabular}",
                      r"\end{table}"])


TABLE_MARKER = re.compile(r"<!-- table:(\w+) -->")


def fill_markers(text: str, rendered: dict[str, str], source: str = "text") -> tuple[str, list[str]]:
    """``text`` with the text between ``<!-- table:NAME -->`` and ``<!-- /table:NAME -->`` (empty or filled)
    replaced by ``rendered[NAME]`` for each marker it holds, and the names of those tables in its order.

    Raises ``ValueError`` naming ``source`` when it holds a marker for a table that ``rendered`` does not have (a
    stale or misspelt marker), listing the tables there are."""
    names = TABLE_MARKER.findall(text)
    unknown = sorted(set(names) - set(rendered))
    if unknown:
        raise ValueError(f"{source}: markers for unknown tables {unknown}; the tables are {sorted(rendered)}")
    for name in names:
        pattern = re.compile(rf"(<!-- table:{name} -->).*?(<!-- /table:{name} -->)", re.S)
        text = pattern.sub(lambda m, t=rendered[name]: m.group(1) + "\n" + t + "\n" + m.group(2), text)
    return text, names


def update_markdown(paths: Sequence[Path], rendered: dict[str, str]) -> dict[Path, list[str]]:
    """Rewrite the tables between each file's markers (:func:`fill_markers`); {path: names of its tables}. Every
    file is checked before any is written, so a bad marker in one leaves all of them as they were."""
    filled = {path: fill_markers(path.read_text(), rendered, str(path)) for path in paths}
    for path, (text, _) in filled.items():
        path.write_text(text)
    return {path: names for path, (_, names) in filled.items()}


