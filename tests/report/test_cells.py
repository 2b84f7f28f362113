"""Cells: mean ± sd, runs kept alike, seed ranges, paired intervals."""

from __future__ import annotations

import math

import pytest

from experiments.report.cells import MISSING, alike, cell, interval_cell, ordinal, paired_interval, seed_ranges


def test_cell():
    assert cell([1.0, 2.0, 3.0]) == "2.0 ± 1.0 (n=3)"
    assert cell([0.5, math.nan], scale=100, digits=2, count=False) == "50.00"
    assert cell([math.inf, math.nan]) == MISSING and cell([]) == MISSING


def test_alike_keeps_the_most_common_setting_and_names_the_others():
    runs = [{"run_dir": f"r{i}", "s": s} for i, s in enumerate([{"steps": 10, "lr": 1}, {"steps": 20, "lr": 1},
                                                               {"steps": 10, "lr": None}, {"steps": 10, "lr": 1}])]
    kept, left = alike(runs + [{"run_dir": "w"}], lambda r: r.get("s"))
    assert [r["run_dir"] for r in kept] == ["r0", "r2", "r3", "w"]  # lr None matches; no settings: not checked
    assert left == ["r1 (steps=20)"]
    same = runs[:1] + runs[2:]
    assert alike(same, lambda r: r["s"]) == (same, [])


def test_seed_ranges_ordinal_and_intervals():
    assert seed_ranges([8, 0, 1, 2, 5, 7]) == "0-2, 5, 7-8"
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 23)] == ["1st", "2nd", "3rd", "4th", "11th", "12th", "23rd"]
    # differences 1, 2, 3: mean 2, sd 1, t(0.975, 2) = 4.303
    assert interval_cell([1.0, 2.0, 3.0]) == "+2.0 [-0.5, +4.5]"
    assert interval_cell([1.5]) == "+1.5" and interval_cell([]) == MISSING
    with pytest.raises(ValueError, match="diffs"):
        paired_interval([])
