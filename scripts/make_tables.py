"""Regenerate the paper's tables from run records, our numbers beside the paper's.

Usage:
    python scripts/make_tables.py                       # Markdown tables of results/**/*.json to stdout
    python scripts/make_tables.py --latex               # LaTeX instead
    python scripts/make_tables.py --runs multirun/      # also Hydra run folders (metrics.json) / W&B offline runs
    python scripts/make_tables.py --readme README.md    # rewrite the tables between the README's markers
    python scripts/make_tables.py --readme README.md results/l2x/README.md results/vae/README.md   # `make tables`

A record is a JSON object with top-level "experiment", "relaxation", "estimator", "metrics" (and "k", "aspect",
"timesteps" where they apply), as every run's metrics.json is. Missing cells are shown as missing, never filled.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MISSING = "—"

# Paper numbers (PROTOCOLS.md). NRI T=10: (ELBO, precision %, recall %).
PAPER_NRI = {
    ("indep", 10): ("-1370 ± 20", "48 ± 2", "93 ± 3"),
    ("ef_topk", 10): ("-2100 ± 20", "41 ± 1", "41 ± 1"),
    ("spanning_tree", 10): ("-1080 ± 110", "91 ± 3", "91 ± 3"),
}
NRI_ROWS = [("indep", "Indep. edges"), ("ef_topk", "E.F. Ent. Top |V|-1"), ("spanning_tree", "Spanning tree")]

# L2X aroma, simple model: (MSE x100, subset precision %) per k.
PAPER_L2X = {
    "l2x": {5: ("3.6±0.1", "28.3±1.7"), 10: ("3.0±0.1", "25.5±1.2"), 15: ("2.6±0.1", "25.5±0.4")},
    "softsub": {5: ("3.6±0.1", "27.2±0.7"), 10: ("3.0±0.1", "26.1±1.1"), 15: ("2.6±0.1", "25.1±1.0")},
    "euclid_topk": {5: ("3.5±0.1", "25.8±0.8"), 10: ("2.8±0.1", "32.9±1.2"), 15: ("2.5±0.1", "29.0±0.3")},
    "cat_ent_topk": {5: ("3.5±0.1", "26.4±2.0"), 10: ("2.9±0.1", "32.1±0.4"), 15: ("2.6±0.1", "28.7±0.5")},
    "bin_ent_topk": {5: ("3.5±0.1", "29.2±2.0"), 10: ("2.7±0.1", "33.6±0.6"), 15: ("2.6±0.1", "28.8±0.4")},
    "ef_topk": {5: ("3.5±0.1", "28.8±1.7"), 10: ("2.7±0.1", "32.8±0.5"), 15: ("2.5±0.1", "29.2±0.8")},
    "corr_topk": {5: ("2.9±0.1", "63.1±5.3"), 10: ("2.5±0.1", "53.1±0.9"), 15: ("2.4±0.1", "45.5±2.7")},
}
L2X_ROWS = [("l2x", "L2X"), ("softsub", "SoftSub"), ("euclid_topk", "Euclid. Top k"),
            ("cat_ent_topk", "Cat. Ent. Top k"), ("bin_ent_topk", "Bin. Ent. Top k"),
            ("ef_topk", "E.F. Ent. Top k"), ("corr_topk", "Corr. Top k")]
L2X_KS = (5, 10, 15)


def _default_w2v_epochs() -> int:
    """``data.w2v.epochs`` of configs/experiment/l2x.yaml: the epochs of the default word2vec embeddings."""
    import yaml

    return int(yaml.safe_load((REPO / "configs" / "experiment" / "l2x.yaml").read_text())["data"]["w2v"]["epochs"])


# The L2X table holds the runs on the default embeddings; the runs on the previous default's (word2vec trained 5
# epochs, until 2026-11-30) fill a table of their own.
L2X_W2V_EPOCHS = _default_w2v_epochs()
L2X_PREVIOUS_W2V_EPOCHS = 5

# Jang et al. (2017), test -ELBO: (categorical, Bernoulli). Our straight_through is ST Gumbel-softmax.
PAPER_VAE = {
    "reinforce": ("110.6", "112.2"),
    "muprop": ("107.0", "109.7"),
    "relaxed": ("101.5", "105.0"),
    "straight_through": ("107.8", "111.5"),
}
VAE_ROWS = [("relaxed", "Gumbel-softmax (SST)"), ("straight_through", "ST Gumbel-softmax"),
            ("reinforce", "REINFORCE (score function)"), ("nvil", "NVIL"), ("muprop", "MuProp"),
            ("rebar", "REBAR"), ("relax", "RELAX")]
VAE_LATENTS = [("gumbel_softmax", "categorical 20×10"), ("binary_concrete", "Bernoulli 200")]


# The goals the issues set, from the paper's numbers (PROTOCOLS.md), checked against the mean over a cell's records:
# (goal, experiment, cell key as the tables group it, metric, scale, digits, target, higher is better).
GOALS = [
    ("NRI, T = 10, spanning tree: test ELBO", "nri", ("spanning_tree", 10, "relaxed"), "test/elbo", 1.0, 0,
     -1080.0, True),
    ("NRI, T = 10, spanning tree: edge precision %", "nri", ("spanning_tree", 10, "relaxed"), "test/edge_precision",
     100.0, 1, 91.0, True),
    ("NRI, T = 10, indep. edges: test ELBO", "nri", ("indep", 10, "relaxed"), "test/elbo", 1.0, 0, -1370.0, True),
    ("NRI, T = 10, E.F. Ent. Top |V|-1: test ELBO", "nri", ("ef_topk", 10, "relaxed"), "test/elbo", 1.0, 0, -2100.0,
     True),
    ("L2X, aroma, k = 10, Corr. Top k: subset precision %", "l2x", ("corr_topk", 10, 1), "test/subset_precision",
     100.0, 1, 53.1, True),
    ("L2X, aroma, k = 10, Corr. Top k: MSE ×100 (held-out aspect-file reviews)", "l2x", ("corr_topk", 10, 1),
     "test/mse_heldout_aspect_file", 100.0, 2, 2.5, False),
    ("VAE, categorical, Gumbel-softmax: test -ELBO", "vae", ("relaxed", "gumbel_softmax"), "test/neg_elbo", 1.0, 1,
     101.5, False),
    ("VAE, categorical, ST Gumbel-softmax: test -ELBO", "vae", ("straight_through", "gumbel_softmax"),
     "test/neg_elbo", 1.0, 1, 107.8, False),
    ("VAE, categorical, REINFORCE: test -ELBO", "vae", ("reinforce", "gumbel_softmax"), "test/neg_elbo", 1.0, 1,
     110.6, False),
    ("VAE, categorical, MuProp: test -ELBO", "vae", ("muprop", "gumbel_softmax"), "test/neg_elbo", 1.0, 1, 107.0,
     False),
    ("VAE, Bernoulli, binary Concrete: test -ELBO", "vae", ("relaxed", "binary_concrete"), "test/neg_elbo", 1.0, 1,
     105.0, False),
    ("VAE, Bernoulli, ST binary Concrete: test -ELBO", "vae", ("straight_through", "binary_concrete"),
     "test/neg_elbo", 1.0, 1, 111.5, False),
]

# --------------------------------------------------------------------------- loading

def _is_record(obj: object, side: bool = False) -> bool:
    """A run record meant for the tables; ``"table": false`` marks a side run (an ablation, a check) to leave out
    of them. ``side=True``: a side run's record instead."""
    return (isinstance(obj, dict) and {"experiment", "relaxation", "metrics"} <= obj.keys()
            and bool(obj.get("table", True)) != side)


def _from_wandb_run(run_dir: Path) -> dict | None:
    """A record from a W&B offline run folder (files/config.yaml + files/wandb-summary.json)."""
    summary, config = run_dir / "files" / "wandb-summary.json", run_dir / "files" / "config.yaml"
    if not (summary.is_file() and config.is_file()):
        return None
    import yaml

    cfg = {k: v.get("value") if isinstance(v, dict) else v for k, v in yaml.safe_load(config.read_text()).items()}
    try:
        exp = cfg["experiment"]["name"]
        rel, est = cfg["relaxation"]["name"], cfg["estimator"]["name"]
    except (KeyError, TypeError):
        return None
    metrics = {k: v for k, v in json.loads(summary.read_text()).items() if k.startswith("test/")}
    record = {"experiment": exp, "relaxation": rel, "estimator": est, "metrics": metrics}
    if exp == "l2x":
        record.update(k=cfg.get("k"), aspect=cfg.get("aspect"), config={"data": cfg.get("data") or {}})
    if exp == "nri":
        record["timesteps"] = (cfg.get("data") or {}).get("timesteps")
    return record


def read_records(paths: Iterable[Path]) -> tuple[list[dict], list[dict]]:
    """(table records, side records) found under ``paths`` in one pass: *.json records, metrics.json in run
    folders, W&B offline runs (table records). Side records are those marked ``"table": false``, which no table
    cell uses."""
    records, side, seen = [], [], set()
    for root in paths:
        root = Path(root)
        files = [root] if root.is_file() else sorted(root.rglob("*.json"))
        for f in files:
            try:
                obj = json.loads(f.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError, OSError):
                continue
            if f.resolve() in seen:
                continue
            if _is_record(obj):
                records.append(obj)
            elif _is_record(obj, side=True):
                side.append(obj)
            else:
                continue
            seen.add(f.resolve())
        if root.is_dir():
            for run in sorted(root.rglob("offline-run-*")):
                if not (run.parent.parent / "metrics.json").exists():
                    rec = _from_wandb_run(run)
                    if rec is not None:
                        records.append(rec)
    return records, side


def load_records(paths: Iterable[Path], side: bool = False) -> list[dict]:
    """Every table record found under ``paths`` (see :func:`read_records`); ``side=True``: the side runs' records
    (``"table": false``) instead."""
    return read_records(paths)[int(side)]


# --------------------------------------------------------------------------- cells

def _finite(value: object) -> bool:
    """A number that is neither NaN nor infinite (a record's missing or failed metric is not)."""
    return isinstance(value, (int, float)) and math.isfinite(value)


def _cell(values: list[float], scale: float = 1.0, digits: int = 1, count: bool = True) -> str:
    """Mean ± sd of the finite values times ``scale`` (the mean alone for one value), with " (n=N)" if ``count``."""
    vals = [v * scale for v in values if _finite(v)]
    if not vals:
        return MISSING
    n = f" (n={len(vals)})" if count else ""
    mean = statistics.fmean(vals)
    if len(vals) == 1:
        return f"{mean:.{digits}f}{n}"
    return f"{mean:.{digits}f} ± {statistics.stdev(vals):.{digits}f}{n}"


def _group(records: list[dict], experiment: str, key, value=lambda r: r["metrics"]) -> dict:
    """{key(record): [value(record), ...]} of the records of ``experiment`` (values: their metrics by default)."""
    groups: dict = defaultdict(list)
    for r in records:
        if r.get("experiment") == experiment:
            groups[key(r)].append(value(r))
    return groups


def _values(metrics: list[dict], name: str) -> list[float]:
    return [m[name] for m in metrics if name in m]


def nri_groups(records: list[dict]) -> dict:
    """{(relaxation, timesteps, estimator): [metrics, ...]} of the NRI runs."""
    return _group(records, "nri", lambda r: (r["relaxation"], int(r.get("timesteps") or 10), r.get("estimator")))


def nri_table(records: list[dict], timesteps: int = 10) -> tuple[list[str], list[list[str]]]:
    groups = nri_groups(records)
    header = ["edge distribution", "ELBO (ours)", "ELBO (paper)", "precision % (ours)", "precision % (paper)",
              "recall % (ours)", "recall % (paper)"]
    rows = []
    for rel, label in NRI_ROWS:
        ms = groups.get((rel, timesteps, "relaxed"), [])
        paper = PAPER_NRI.get((rel, timesteps), (MISSING,) * 3)
        rows.append([label, _cell(_values(ms, "test/elbo"), digits=0), paper[0],
                     _cell(_values(ms, "test/edge_precision"), 100), paper[1],
                     _cell(_values(ms, "test/edge_recall"), 100), paper[2]])
    return header, rows


def l2x_build(record: dict) -> str | None:
    """The sha256 of the embeddings file an L2X run used (``data.embeddings_sha256``); None in older records."""
    return (record.get("data") or {}).get("embeddings_sha256")


def l2x_same_build(a: dict, b: dict) -> bool:
    """Both runs used the same embeddings file, or at least one record predates ``data.embeddings_sha256``."""
    return None in (l2x_build(a), l2x_build(b)) or l2x_build(a) == l2x_build(b)


def l2x_w2v_epochs(record: dict) -> int | None:
    """Epochs of the word2vec embeddings an L2X run trained: ``config.data.w2v.epochs``; None for a run on
    supplied embeddings (``data.embeddings``); a record without its config counts as the current default."""
    config = record.get("config")
    if not isinstance(config, dict):
        return L2X_W2V_EPOCHS
    data = config.get("data") or {}
    if data.get("embeddings"):
        return None
    epochs = (data.get("w2v") or {}).get("epochs")
    return int(epochs) if epochs is not None else None


def l2x_groups(records: list[dict], w2v_epochs: int = L2X_W2V_EPOCHS) -> dict:
    """{(relaxation, k, aspect): [metrics, ...]} of the L2X runs on word2vec embeddings of ``w2v_epochs``."""
    return _group([r for r in records if r.get("experiment") == "l2x" and l2x_w2v_epochs(r) == w2v_epochs], "l2x",
                  lambda r: (r["relaxation"], int(r.get("k") or 10), int(r.get("aspect", 1))))


def l2x_table(records: list[dict], aspect: int = 1,
              w2v_epochs: int = L2X_W2V_EPOCHS) -> tuple[list[str], list[list[str]]]:
    groups = l2x_groups(records, w2v_epochs)
    header = ["relaxation"]
    for k in L2X_KS:
        header += [f"k = {k} (ours)", f"k = {k} (paper)"]
    rows = []
    for rel, label in L2X_ROWS:
        row = [label]
        for k in L2X_KS:
            ms = groups.get((rel, k, aspect), [])
            ours = f"{_cell(_values(ms, 'test/mse'), 100, 2)} / {_cell(_values(ms, 'test/subset_precision'), 100)}"
            pm, pp = PAPER_L2X[rel][k]
            row += [ours if ms else MISSING, f"{pm} / {pp}"]
        rows.append(row)
    return header, rows


def l2x_ranking(records: list[dict], k: int, aspect: int = 1) -> dict[str, float]:
    """{relaxation: mean subset precision (a fraction)} of the rows with a table run at ``k``, most precise first:
    the L2X table's cells, and the one order the seed-by-seed table and the goals table rank by."""
    groups = l2x_groups(records)
    means = {rel: statistics.fmean(v) for rel, _ in L2X_ROWS
             if (v := [x for x in _values(groups.get((rel, k, aspect), []), "test/subset_precision") if _finite(x)])}
    return dict(sorted(means.items(), key=lambda item: item[1], reverse=True))


def _seed_ranges(seeds: Iterable[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> "0-2, 5, 7-8"."""
    spans: list[list[int]] = []
    for s in sorted(seeds):
        if spans and s == spans[-1][1] + 1:
            spans[-1][1] = s
        else:
            spans.append([s, s])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in spans)


def l2x_seed_runs(records: list[dict], aspect: int = 1) -> dict[tuple[str, int], dict[int, dict]]:
    """{(relaxation, k): {seed: record}} of the table's L2X runs of ``aspect`` with a finite subset precision."""
    runs: dict = defaultdict(dict)
    for r in records:
        if (r.get("experiment") == "l2x" and l2x_w2v_epochs(r) == L2X_W2V_EPOCHS
                and int(r.get("aspect", 1)) == aspect and isinstance(r.get("seed"), int)
                and _finite(r["metrics"].get("test/subset_precision"))):
            runs[(r["relaxation"], int(r.get("k") or 10))][r["seed"]] = r
    return runs


def l2x_corr_margins(records: list[dict], aspect: int = 1) -> dict[tuple[str, int], list[float]]:
    """{(relaxation, k): [Corr. Top k's subset precision minus the row's, in points, on each seed both ran]} for
    every other row of the table that shares a seed with Corr. Top k at that k (seeds in increasing order)."""
    runs = l2x_seed_runs(records, aspect)
    margins = {}
    for k in L2X_KS:
        corr = runs.get(("corr_topk", k), {})
        for rel, _ in L2X_ROWS:
            other = runs.get((rel, k), {})
            shared = sorted(other.keys() & corr.keys())
            if rel != "corr_topk" and shared:
                margins[(rel, k)] = [100 * (corr[s]["metrics"]["test/subset_precision"]
                                            - other[s]["metrics"]["test/subset_precision"]) for s in shared]
    return margins


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


def _interval_cell(diffs: Sequence[float]) -> str:
    """"+1.8 [-0.2, +3.8]" (:func:`paired_interval`), the mean alone for one pair, MISSING for none."""
    if not diffs:
        return MISSING
    mean, low, high = paired_interval(diffs)
    return f"{mean:+.1f}" if len(diffs) == 1 else f"{mean:+.1f} [{low:+.1f}, {high:+.1f}]"


def l2x_seeds_table(records: list[dict], aspect: int = 1) -> tuple[list[str], list[list[str]]]:
    """The table's L2X runs of ``aspect`` seed by seed: per k and row, its place by mean subset precision, the mean
    ± sd, the precision of each seed, on how many of the row's seeds Corr. Top k (run on the same seed) is the more
    precise and by how much on average, with a 95% Student-t interval over those seeds (:func:`l2x_corr_margins`),
    and which seeds ran on which build of the embeddings (the first 8 hex digits of its sha256)."""
    runs, margins = l2x_seed_runs(records, aspect), l2x_corr_margins(records, aspect)
    seeds = sorted({s for by_seed in runs.values() for s in by_seed})
    header = ["k", "relaxation", "place", "precision %", *[f"seed {s}" for s in seeds],
              "Corr. Top k higher on", "Corr. Top k minus row [95% CI]", "embeddings build: seeds"]
    rows = []
    for k in L2X_KS:
        precision = {rel: {s: 100 * r["metrics"]["test/subset_precision"] for s, r in runs[(rel, k)].items()}
                     for rel, _ in L2X_ROWS if runs.get((rel, k))}
        ranked = [rel for rel in l2x_ranking(records, k, aspect) if rel in precision]
        for rel, label in L2X_ROWS:
            if rel not in precision:
                continue
            diffs = margins.get((rel, k), [])
            builds: dict = defaultdict(list)
            for s, r in runs[(rel, k)].items():
                builds[(l2x_build(r) or "unknown")[:8]].append(s)
            where = "; ".join(f"{b}: {_seed_ranges(ss)}" for b, ss in sorted(builds.items(), key=lambda x: min(x[1])))
            rows.append([str(k), label, f"{ranked.index(rel) + 1} of {len(ranked)}",
                         _cell(list(precision[rel].values())),
                         *[f"{precision[rel][s]:.1f}" if s in precision[rel] else "" for s in seeds],
                         f"{sum(d > 0 for d in diffs)} of {len(diffs)}" if diffs else MISSING,
                         _interval_cell(diffs), where])
    return header, rows


def l2x_best_epoch_table(records: list[dict], aspect: int = 1) -> tuple[list[str], list[list[str]]]:
    """When the table's L2X runs of ``aspect`` had their best checkpoint (by validation MSE), per row over all k and
    seeds: the median evaluation (one per ``trainer.eval_every`` steps, an epoch in the table's runs) and how many
    runs had it at the last one (``best/step`` = ``trainer.max_steps``: training longer might still help them).
    Runs whose record lacks the config or ``best/step`` are left out."""
    evals: dict = defaultdict(list)  # relaxation -> [(best evaluation, at the last one), ...]
    for r in records:
        trainer = (r.get("config") or {}).get("trainer") or {}
        step, every, last = r["metrics"].get("best/step"), trainer.get("eval_every"), trainer.get("max_steps")
        if (r.get("experiment") == "l2x" and l2x_w2v_epochs(r) == L2X_W2V_EPOCHS and int(r.get("aspect", 1)) == aspect
                and _finite(step) and isinstance(every, int) and every > 0 and isinstance(last, int)):
            evals[r["relaxation"]].append((step / every, step >= last))
    header = ["relaxation", "runs", "best epoch, median", "best at the last epoch"]
    rows = []
    for label, group in [(label, evals[rel]) for rel, label in L2X_ROWS if evals.get(rel)] + [
            ("all rows", [e for rel, _ in L2X_ROWS for e in evals.get(rel, [])])]:
        if group:
            rows.append([label, str(len(group)), f"{statistics.median(e for e, _ in group):g}",
                         str(sum(at_last for _, at_last in group))])
    return header, rows


def _flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    flat: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# Settings in which a side run may differ from the table run it is paired with, besides the one it probes (nothing
# that changes the training).
_PAIR_FREE = {"seed", "device", "trainer.progress", "trainer.resume"}
# The settings a side run may probe, each with the config keys that carry it (``experiment.tau`` sets the
# relaxation's temperature).
_PAIR_SETTINGS = {"relaxation.tau": {"experiment.tau", "relaxation.tau"}, "trainer.max_steps": {"trainer.max_steps"},
                  "model.pairwise": {"model.pairwise", "model.pairwise_offset"}}
# (metric, column label, scale, digits, True when higher is better) of the paired tables; a pair needs the first two
# in both records.
_PRECISION = ("test/subset_precision", "precision %", 100, 1, True)
_VALID_MSE = ("best/valid/mse", "valid MSE ×100", 100, 2, False)
_ASPECT_MSE = ("test/mse_heldout_aspect_file", "aspect-file MSE ×100", 100, 2, False)
_PAIR_METRICS = {_PRECISION[0], _VALID_MSE[0]}


def _setting_value(flat: dict[str, object], setting: str) -> float | str | None:
    """The value of a paired ``setting`` in a flattened config, as a key: numbers as floats (1 and 1.0 alike),
    anything else as its string; ``model.pairwise`` names the head and, when not 0, its offset ("fixed, offset 2");
    None when the config lacks it."""
    value = flat.get(setting)
    if value is None:
        return None
    if setting == "model.pairwise":
        offset = float(flat.get("model.pairwise_offset") or 0.0)
        return f"{value}, offset {offset:g}" if offset else str(value)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def l2x_side_pairs(records: list[dict], side_records: list[dict], setting: str) -> dict:
    """{(relaxation, k, aspect, value): [(seed, side metrics, table metrics), ...]}: each side run on the default
    embeddings whose ``setting`` (a key of ``_PAIR_SETTINGS``: ``relaxation.tau``, ``trainer.max_steps`` or
    ``model.pairwise``) has a value other than that of a table run with the same relaxation, k and seed, on the same
    build of the embeddings (``data.embeddings_sha256``, where both records have it) and otherwise the same config
    (every setting both records have, but those of ``_PAIR_FREE``). Values are keyed as :func:`_setting_value`
    gives them."""
    if setting not in _PAIR_SETTINGS:
        raise ValueError(f"setting must be one of {sorted(_PAIR_SETTINGS)}, got {setting!r}")
    free = _PAIR_FREE | _PAIR_SETTINGS[setting]

    def key(r: dict) -> tuple:
        return r["relaxation"], int(r.get("k") or 10), int(r.get("aspect", 1)), r.get("seed")

    table = defaultdict(list)
    for r in records:
        if r.get("experiment") == "l2x" and isinstance(r.get("config"), dict):
            table[key(r)].append(r)
    pairs: dict = defaultdict(list)
    for probe in side_records:
        if (probe.get("experiment") != "l2x" or not isinstance(probe.get("config"), dict)
                or l2x_w2v_epochs(probe) != L2X_W2V_EPOCHS):
            continue
        flat = _flatten(probe["config"])
        for run in table.get(key(probe), []):
            other = _flatten(run["config"])
            same = (all(flat[n] == other[n] for n in flat.keys() & other.keys() - free)
                    and l2x_same_build(probe, run))
            measured = all(_PAIR_METRICS <= m.keys() for m in (probe["metrics"], run["metrics"]))
            value = _setting_value(flat, setting)
            if same and measured and value is not None and value != _setting_value(other, setting):
                pairs[(*key(probe)[:3], value)].append(
                    (probe.get("seed"), probe["metrics"], run["metrics"]))
                break
    return pairs


def l2x_side_table(records: list[dict], side_records: list[dict], setting: str, label: str,
                   metrics: Sequence[tuple] = (_PRECISION, _VALID_MSE), listed: tuple[str, str] | None = None,
                   aspect: int = 1) -> tuple[list[str], list[list[str]]]:
    """The side runs of ``aspect`` that probe ``setting`` (column ``label``) against the table runs of the same seeds
    (:func:`l2x_side_pairs`): each of ``metrics`` at the side run's value and at the table's (means ± sd over the
    pairs, over the pairs that have the metric) and in how many pairs the side run is the better; ``listed``
    (metric, column label): a last column with that metric of each side run, in seed order."""
    pairs = {(rel, k, v): runs for (rel, k, asp, v), runs in l2x_side_pairs(records, side_records, setting).items()
             if asp == aspect}
    names, order = dict(L2X_ROWS), {rel: i for i, (rel, _) in enumerate(L2X_ROWS)}
    header = ["relaxation", "k", label, "seeds"]
    for _, name, _, _, higher in metrics:
        header += [f"{name} at {label}", f"at the table's {label}", f"{'higher' if higher else 'lower'} at {label}"]
    if listed:
        header.append(listed[1])
    rows = []
    for rel, k, value in sorted(pairs, key=lambda x: (x[1], order.get(x[0], len(order)), x[2])):
        runs = sorted(pairs[(rel, k, value)], key=lambda p: p[0])
        shown = f"{value:g}" if isinstance(value, float) else value
        row = [names.get(rel, rel), str(k), shown, ", ".join(str(s) for s, _, _ in runs)]
        for metric, _, scale, digits, higher in metrics:
            both = [(p[metric], t[metric]) for _, p, t in runs
                    if _finite(p.get(metric)) and _finite(t.get(metric))]
            better = sum((a > b) if higher else (a < b) for a, b in both)
            row += [_cell([a for a, _ in both], scale, digits, count=False),
                    _cell([b for _, b in both], scale, digits, count=False), f"{better} of {len(both)}"]
        if listed:
            row.append(", ".join(f"{p[listed[0]]:g}" if listed[0] in p else MISSING for _, p, _ in runs))
        rows.append(row)
    return header, rows


def l2x_tau_table(records: list[dict], side_records: list[dict],
                  aspect: int = 1) -> tuple[list[str], list[list[str]]]:
    """The L2X temperature probes of ``aspect`` against the table runs of the same seeds: subset precision and
    validation MSE (the model-selection criterion) at the probe's temperature and at the table's."""
    return l2x_side_table(records, side_records, "relaxation.tau", "tau", aspect=aspect)


def l2x_steps_table(records: list[dict], side_records: list[dict],
                    aspect: int = 1) -> tuple[list[str], list[list[str]]]:
    """The L2X runs trained for more (or fewer) steps than the table's run of the same seed: subset precision,
    validation MSE and the held-out aspect-file MSE (the one comparable with the paper's) at both, and the step of
    each longer run's best checkpoint (by validation MSE)."""
    return l2x_side_table(records, side_records, "trainer.max_steps", "steps",
                          (_PRECISION, _VALID_MSE, _ASPECT_MSE), ("best/step", "best step at steps"), aspect)


def l2x_pairwise_table(records: list[dict], side_records: list[dict],
                       aspect: int = 1) -> tuple[list[str], list[list[str]]]:
    """Corr. Top k with another pairwise head (``model.pairwise`` and its ``model.pairwise_offset``) than the table
    run of the same seed: subset precision, validation MSE and the held-out aspect-file MSE with both heads. Only
    Corr. Top k's runs: the other rows have no pairwise logits, whatever their config names."""
    side_records = [r for r in side_records if r.get("relaxation") == "corr_topk"]
    return l2x_side_table(records, side_records, "model.pairwise", "head",
                          (_PRECISION, _VALID_MSE, _ASPECT_MSE), aspect=aspect)


def vae_settings(record: dict) -> dict[str, object] | None:
    """The training settings that the seeds of one VAE cell must share, with the defaults of the time for a record
    that predates a setting (no KL warm-up, PyTorch's initialisation, a constant learning rate); None for a record
    without its config (a W&B run's), which is not checked."""
    cfg = record.get("config")
    if not isinstance(cfg, dict):
        return None
    optim = cfg.get("optim") or {}
    schedule = optim.get("schedule") or "constant"
    return {"latent": record.get("latent"), "binarize": record.get("binarize", "dynamic"),
            "anneal": record.get("anneal"), "anneal.kl_warmup": record.get("kl_warmup", 0),
            "model.init": record.get("init", "torch"), "optim.lr": optim.get("lr"), "optim.schedule": schedule,
            "optim.lr_min": optim.get("lr_min") if schedule == "cosine" else None,
            "trainer.max_steps": (cfg.get("trainer") or {}).get("max_steps"),
            "data.batch_size": (cfg.get("data") or {}).get("batch_size")}


def vae_groups(records: list[dict]) -> dict:
    """{(estimator, relaxation): [metrics, ...]} of the VAE runs.

    Raises:
        ValueError: the runs of one cell differ in a setting of :func:`vae_settings` (a side run left without
            ``"table": false``, say), naming the setting and the runs.
    """
    cells = _group(records, "vae", lambda r: (r["estimator"], r["relaxation"]), value=lambda r: r)
    for (est, rel), runs in cells.items():
        checked = [(r, s) for r in runs if (s := vae_settings(r)) is not None]
        for name in checked[0][1] if checked else ():
            if len({json.dumps(s[name], sort_keys=True) for _, s in checked}) > 1:
                runs_by = "; ".join(f"{r.get('run_dir') or r.get('command', '?')}: {s[name]}" for r, s in checked)
                raise ValueError(f"the VAE cell {rel}/{est} mixes runs with different {name} ({runs_by}); mark the "
                                 f"runs that do not belong with \"table\": false")
    return {key: [r["metrics"] for r in runs] for key, runs in cells.items()}


def vae_table(records: list[dict]) -> tuple[list[str], list[list[str]]]:
    groups = vae_groups(records)
    header = ["estimator"]
    for _, label in VAE_LATENTS:
        header += [f"{label} (ours)", f"{label} (paper)"]
    rows = []
    for est, label in VAE_ROWS:
        row = [label]
        for i, (rel, _) in enumerate(VAE_LATENTS):
            ms = groups.get((est, rel), [])
            row += [_cell(_values(ms, "test/neg_elbo")), PAPER_VAE.get(est, (MISSING, MISSING))[i]]
        rows.append(row)
    return header, rows


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _l2x_order_row(records: list[dict], aspect: int = 1) -> list[str]:
    """Corr. Top k's place among the seven rows by mean subset precision at each k, and its margin over the best
    other row (negative: behind it)."""
    labels = dict(L2X_ROWS)
    places, first_everywhere, complete = [], True, True
    for k in L2X_KS:
        ranked = l2x_ranking(records, k, aspect)
        if "corr_topk" not in ranked or len(ranked) < 2:
            complete = False
            continue
        place = list(ranked).index("corr_topk") + 1
        best_other = next(r for r in ranked if r != "corr_topk")
        margin = 100 * (ranked["corr_topk"] - ranked[best_other])
        first_everywhere &= place == 1
        places.append(f"k = {k}: {_ordinal(place)} of {len(ranked)}, {margin:+.1f} to {labels[best_other]}")
    if not places:
        status = "no run"
    elif first_everywhere and complete:
        status = "met"
    else:
        status = "not met" if not first_everywhere else "incomplete"
    return ["L2X, aroma: Corr. Top k first in subset precision at every k", "first, by 16 to 34 points",
            "; ".join(places) or MISSING, status]


def goals_table(records: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Each goal of :data:`GOALS`: the paper's target, our cell (mean ± sd over seeds) and whether its mean meets it."""
    groups = {"nri": nri_groups(records), "l2x": l2x_groups(records), "vae": vae_groups(records)}
    header = ["goal", "paper", "ours", "status"]
    rows = []
    for label, exp, key, metric, scale, digits, target, higher in GOALS:
        vals = [v * scale for v in _values(groups[exp].get(key, []), metric) if math.isfinite(v)]
        paper = f"{'≥' if higher else '≤'} {target:.{digits}f}"
        if not vals:
            rows.append([label, paper, MISSING, "no run"])
            continue
        mean = statistics.fmean(vals)
        gap = (target - mean) if higher else (mean - target)
        status = "met" if gap <= 0 else f"not met, by {gap:.{digits}f}"
        rows.append([label, paper, _cell(vals, digits=digits), status])
    if exp_rows := [r for r in rows if r[0].startswith("L2X")]:
        rows.insert(rows.index(exp_rows[-1]) + 1, _l2x_order_row(records))
    return header, rows


# --------------------------------------------------------------------------- rendering

def markdown(header: list[str], rows: list[list[str]]) -> str:
    def row(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    lines = [row(header), "|" + "---|" * len(header)] + [row(r) for r in rows]
    return "\n".join(lines)


def latex(header: list[str], rows: list[list[str]], caption: str) -> str:
    def esc(s: str) -> str:
        s = s.replace("±", r"$\pm$").replace("×", r"$\times$").replace("—", "--")
        return re.sub(r"([%&#_])", r"\\\1", s).replace("|V|", r"$|V|$")

    cols = "l" + "r" * (len(header) - 1)
    body = [" & ".join(esc(c) for c in header) + r" \\ \midrule"] + [" & ".join(esc(c) for c in r) + r" \\"
                                                                     for r in rows]
    return "\n".join([r"\begin{table}[t]", r"\centering", rf"\caption{{{esc(caption)}}}",
                      rf"\begin{{tabular}}{{{cols}}}", r"\toprule", *body, r"\bottomrule", r"\end{tabular}",
                      r"\end{table}"])


def all_tables(records: list[dict],
               side_records: list[dict] = ()) -> dict[str, tuple[str, tuple[list[str], list[list[str]]]]]:
    """Every table: name -> (caption, (header, rows)); ``side_records`` (``"table": false``) feed only the
    tables of side runs paired with table runs (temperature, training steps, pairwise head) and the learning
    curves."""
    from l2x_learning_curve import curves, summarise, table  # it imports this module: imported here, not above

    return {
        "nri": ("NRI graph layout, T = 10: test ELBO and edge precision/recall of hard samples",
                nri_table(records, 10)),
        "nri20": ("NRI graph layout, T = 20", nri_table(records, 20)),
        "l2x": ("L2X on BeerAdvocate, aroma: test MSE ×100 / subset precision %", l2x_table(records)),
        "l2x_seeds": ("L2X on BeerAdvocate, aroma: subset precision % seed by seed", l2x_seeds_table(records)),
        "l2x_best_epoch": ("L2X, aroma: the epoch of the best checkpoint of the table's runs",
                           l2x_best_epoch_table(records)),
        "l2x_w2v5": (f"L2X, aroma, on the previous default embeddings (word2vec {L2X_PREVIOUS_W2V_EPOCHS} epochs)",
                     l2x_table(records, w2v_epochs=L2X_PREVIOUS_W2V_EPOCHS)),
        "l2x_tau": ("L2X, aroma: temperature probes against the table's runs of the same seeds",
                    l2x_tau_table(records, list(side_records))),
        "l2x_steps": ("L2X, aroma: longer training against the table's runs of the same seeds",
                      l2x_steps_table(records, list(side_records))),
        "l2x_pairwise": ("L2X, aroma: Corr. Top k with another pairwise head against the table's runs of the same "
                         "seeds", l2x_pairwise_table(records, list(side_records))),
        "l2x_learning_curve": ("L2X, aroma, k = 10: runs that differ only in the training-set size",
                               table(summarise(curves([*records, *side_records])))),
        "vae": ("Discrete VAE on MNIST: test negative ELBO (nats)", vae_table(records)),
        "goals": ("The issues' goals (the paper's numbers) against the mean of our cells", goals_table(records)),
    }


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=REPO / "results", help="folder of JSON records")
    parser.add_argument("--runs", type=Path, action="append", default=[], help="Hydra run/multirun folders")
    parser.add_argument("--latex", action="store_true", help="print LaTeX tables")
    parser.add_argument("--readme", type=Path, nargs="+", metavar="FILE",
                        help="rewrite the tables between these Markdown files' markers")
    args = parser.parse_args(argv)
    records, side_records = read_records([args.results, *args.runs])
    tables = all_tables(records, side_records)
    if args.readme:
        placed = update_markdown(args.readme, {n: markdown(*t) for n, (_, t) in tables.items()})
        for path, names in placed.items():
            print(f"updated {path} from {len(records)} records: {', '.join(names) or 'no table markers'}")
        if unplaced := [n for n in tables if not any(n in names for names in placed.values())]:
            print(f"no markers for: {', '.join(unplaced)}")
        return 0
    for caption, table in tables.values():
        print(latex(*table, caption) if args.latex else f"### {caption}\n\n{markdown(*table)}\n", end="\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
