"""Table cells: grouping records into cells, keeping a cell's runs alike, and mean ± sd."""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence

from experiments.report.records import run_name

MISSING = "—"


def finite(value: object) -> bool:
    """A number that is neither NaN nor infinite (a record's missing or failed metric is not)."""
    return isinstance(value, (int, float)) and math.isfinite(value)


def cell(values: list[float], scale: float = 1.0, digits: int = 1, count: bool = True) -> str:
    """Mean ± sd of the finite values times ``scale`` (the mean alone for one value), with " (n=N)" if ``count``;
    :data:`MISSING` without a finite value."""
    vals = [v * scale for v in values if finite(v)]
    if not vals:
        return MISSING
    n = f" (n={len(vals)})" if count else ""
    mean = statistics.fmean(vals)
    if len(vals) == 1:
        return f"{mean:.{digits}f}{n}"
    return f"{mean:.{digits}f} ± {statistics.stdev(vals):.{digits}f}{n}"


def group(records: list[dict], experiment: str, key: Callable, value: Callable = lambda r: r["metrics"]) -> dict:
    """{key(record): [value(record), ...]} of the records of ``experiment`` (values: their metrics by default)."""
    groups: dict = defaultdict(list)
    for r in records:
        if r.get("experiment") == experiment:
            groups[key(r)].append(value(r))
    return groups


def values(metrics: list[dict], name: str) -> list[float]:
    """The metric ``name`` of each metrics dict that has it."""
    return [m[name] for m in metrics if name in m]


def alike(runs: list[dict], settings: Callable[[dict], dict | None]) -> tuple[list[dict], list[str]]:
    """(kept, left out) of one cell's runs: the runs that share the most common value of every setting of
    ``settings(run)`` in which the runs differ (a sweep over ``trainer.max_steps``, say), and a line naming each
    other run with its values of those settings. A setting a run does not have (None) matches any value; a run
    whose ``settings`` is None is not checked and kept."""
    checked = [(r, s) for r in runs if (s := settings(r)) is not None]
    names = sorted({n for _, s in checked for n in s})
    differ = [n for n in names if len({json.dumps(s[n], sort_keys=True) for _, s in checked
                                       if s.get(n) is not None}) > 1]
    if not differ:
        return list(runs), []
    keys = {id(r): tuple(json.dumps(s.get(n), sort_keys=True) for n in differ) for r, s in checked}
    common = Counter(k for k in keys.values() if "null" not in k).most_common(1)
    best = common[0][0] if common else next(iter(keys.values()))

    def matches(key: tuple) -> bool:
        return all(a == b or a == "null" for a, b in zip(key, best))

    kept = [r for r in runs if id(r) not in keys or matches(keys[id(r)])]
    left = [f"{run_name(r)} ({', '.join(f'{n}={s.get(n)}' for n in differ)})" for r, s in checked
            if not matches(keys[id(r)])]
    return kept, left


def seed_ranges(seeds: Iterable[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> "0-2, 5, 7-8"."""
    spans: list[list[int]] = []
    for s in sorted(seeds):
        if spans and s == spans[-1][1] + 1:
            spans[-1][1] = s
        else:
            spans.append([s, s])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in spans)


def paired_interval(diffs: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the mean of paired differences and its Student-t interval at ``level`` (low = high =
    mean for a single pair)."""
    if not diffs:
        raise ValueError("diffs must hold at least one difference, got none")
    mean = statistics.fmean(diffs)
    if len(diffs) == 1:
        return mean, mean, mean
    from scipy import stats

    half = stats.t.ppf((1 + level) / 2, len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return mean, mean - half, mean + half


def interval_cell(diffs: Sequence[float]) -> str:
    """"+1.8 [-0.2, +3.8]" (:func:`paired_interval`), the mean alone for one pair, :data:`MISSING` for none."""
    if not diffs:
        return MISSING
    mean, low, high = paired_interval(diffs)
    return f"{mean:+.1f}" if len(diffs) == 1 else f"{mean:+.1f} [{low:+.1f}, {high:+.1f}]"


def ordinal(n: int) -> str:
    """1 -> "1st", 12 -> "12th", 23 -> "23rd"."""
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"
