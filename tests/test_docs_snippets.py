"""Every ```python block of docs/distributions.md runs as written, each in a fresh namespace (issue 53, item 5)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = ["distributions.md"]


def python_blocks(path: Path) -> list[str]:
    """The ```python blocks of a Markdown file, in order (the pattern tests/test_readme.py uses)."""
    return re.compile(r"```python\n(.*?)```", re.S).findall(path.read_text())


CASES = [(page, i) for page in PAGES for i in range(len(python_blocks(DOCS / page)))]


def test_every_page_has_blocks():
    for page in PAGES:
        assert len(python_blocks(DOCS / page)) >= 4, page


@pytest.mark.parametrize("page,index", CASES, ids=[f"{p}[{i}]" for p, i in CASES])
def test_block_runs(page, index):
    code = python_blocks(DOCS / page)[index]
    assert not re.search(r"^\s*(import|from)\s+(torch_struct|pyro)\b", code, re.M)  # peers only in comments
    torch.manual_seed(index)
    exec(compile(code, f"{page}[{index}]", "exec"), {"__name__": f"docs_{index}"})
