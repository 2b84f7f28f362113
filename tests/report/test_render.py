"""Rendering: Markdown and LaTeX tables, and the tables between Markdown files' markers (make_tables --readme)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.report.helpers import _records, script


def test_readme_markers_rewritten(tmp_path: Path):
    res = _records(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- table:vae -->\nold\n<!-- /table:vae -->\nend\n")
    script("make_tables").main(["--results", str(res), "--readme", str(readme)])
    text = readme.read_text()
    assert "old" not in text and "Gumbel-softmax (SST)" in text and text.endswith("end\n")
    readme.write_text("intro\n<!-- table:vae -->\n<!-- /table:vae -->\nend\n")  # empty markers are filled too
    script("make_tables").main(["--results", str(res), "--readme", str(readme)])
    text = readme.read_text()
    assert "Gumbel-softmax (SST)" in text and text.count("<!-- table:vae -->") == 1
    script("make_tables").main(["--results", str(res), "--readme", str(readme)])  # idempotent
    assert readme.read_text() == text


def test_tables_spread_over_several_files(tmp_path: Path, capsys):
    res = _records(tmp_path)
    main_md, detail_md, plain_md = tmp_path / "README.md", tmp_path / "detail.md", tmp_path / "plain.md"
    main_md.write_text("<!-- table:vae -->\n<!-- /table:vae -->\n")
    detail_md.write_text("a\n<!-- table:l2x -->\nold\n<!-- /table:l2x -->\nb\n")
    plain_md.write_text("no tables here\n")
    script("make_tables").main(["--results", str(res), "--readme", str(main_md), str(detail_md), str(plain_md)])
    assert "Gumbel-softmax (SST)" in main_md.read_text() and "Corr. Top k" not in main_md.read_text()
    detail = detail_md.read_text()
    assert "old" not in detail and "| Corr. Top k |" in detail and detail.startswith("a\n") and detail.endswith("b\n")
    assert plain_md.read_text() == "no tables here\n"
    out = capsys.readouterr().out
    assert "no table markers" in out and "no markers for:" in out and "nri" in out.split("no markers for:")[1]


def test_unknown_table_marker_is_an_error(tmp_path: Path):
    res = _records(tmp_path)
    good, md = tmp_path / "good.md", tmp_path / "README.md"
    good.write_text("<!-- table:vae -->\n<!-- /table:vae -->\n")
    md.write_text("<!-- table:vea -->\n<!-- /table:vea -->\n")
    with pytest.raises(ValueError, match=r"README\.md: markers for unknown tables \['vea'\].*'vae'"):
        script("make_tables").main(["--results", str(res), "--readme", str(good), str(md)])
    assert md.read_text() == "<!-- table:vea -->\n<!-- /table:vea -->\n"  # left as it was
    assert good.read_text() == "<!-- table:vae -->\n<!-- /table:vae -->\n"  # and so is the file before it
