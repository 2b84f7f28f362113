"""The L2X tables (BeerAdvocate, aroma): the paper's table, seed by seed, best epochs, the side runs paired with the
table's runs (temperature, training steps, pairwise head) and the learning curves over the training-set size."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from experiments.report.cells import (
    MISSING,
    alike,
    cell,
    finite,
    group,
    interval_cell,
    seed_ranges,
    values,
)
from experiments.report.protocol import Protocol, matching
from experiments.report.records import REPO, flatten

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


# The table's protocol (docs/l2x.md): the full BeerAdvocate training files, reviews cut to 350 words, word2vec
# embeddings of 200 dimensions trained here, the 100-filter selector and 250-unit predictor, batch 40 in
# length-bucketed batches (50), 10 epochs (7,750 steps). One protocol per word2vec training length (the table and
# the one on the previous default's embeddings). A record from before data.train_fraction existed trained on all.
L2X_PROTOCOL = Protocol(f"L2X, word2vec {L2X_W2V_EPOCHS} epochs", "l2x", {
    "data.train_files": None, "data.train_fraction": 1.0, "data.limit_train": None, "data.max_len": 350,
    "data.embeddings": None, "data.embedding_dim": 200, "data.w2v.epochs": L2X_W2V_EPOCHS, "model.filters": 100,
    "model.hidden": 250, "data.batch_size": 40, "data.bucket_batches": 50, "trainer.max_steps": 7750},
    absent={"data.train_fraction": 1.0})
L2X_PROTOCOLS = {L2X_W2V_EPOCHS: L2X_PROTOCOL,
                 L2X_PREVIOUS_W2V_EPOCHS: L2X_PROTOCOL.derive(f"L2X, word2vec {L2X_PREVIOUS_W2V_EPOCHS} epochs",
                                                              data__w2v__epochs=L2X_PREVIOUS_W2V_EPOCHS)}


# Settings the runs of one cell must share where both records have them (a sweep over one of them, run with
# make_tables --runs, is split: the runs off the most common value are left out and named).
L2X_SETTINGS = ("trainer.max_steps", "trainer.eval_every", "data.train_fraction", "data.train_files",
                "data.bucket_batches", "data.batch_size", "relaxation.tau", "model.pairwise", "model.pairwise_offset",
                "optim.lr", "optim.schedule")


def paper_value(text: str) -> tuple[float, float]:
    """'63.1±5.3' -> (63.1, 5.3)."""
    mean, sd = text.split("±")
    return float(mean), float(sd)


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


def l2x_settings(record: dict) -> dict[str, object] | None:
    """The settings of :data:`L2X_SETTINGS` in a record's config (None for a record without its config)."""
    cfg = record.get("config")
    if not isinstance(cfg, dict):
        return None
    flat = flatten(cfg)
    return {name: flat.get(name) for name in L2X_SETTINGS}


def l2x_cells(records: list[dict], w2v_epochs: int = L2X_W2V_EPOCHS) -> tuple[dict, list[str]]:
    """({(relaxation, k, aspect): [metrics, ...]}, left out) of the L2X runs of the protocol on word2vec embeddings
    of ``w2v_epochs`` (:data:`L2X_PROTOCOLS`), each cell holding runs alike in :data:`L2X_SETTINGS`
    (:func:`cells.alike`)."""
    cells, left_out = {}, []
    runs = matching(records, L2X_PROTOCOLS[w2v_epochs])
    for key, rs in group(runs, "l2x", lambda r: (r["relaxation"], int(r.get("k") or 10), int(r.get("aspect", 1))),
                         lambda r: r).items():
        kept, left = alike(rs, l2x_settings)
        cells[key] = [r["metrics"] for r in kept]
        left_out += [f"L2X {key[0]} k={key[1]}: {line}" for line in left]
    return cells, left_out


def l2x_groups(records: list[dict], w2v_epochs: int = L2X_W2V_EPOCHS) -> dict:
    """{(relaxation, k, aspect): [metrics, ...]} of the L2X runs on word2vec embeddings of ``w2v_epochs``
    (:func:`l2x_cells`)."""
    return l2x_cells(records, w2v_epochs)[0]


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
            ours = f"{cell(values(ms, 'test/mse'), 100, 2)} / {cell(values(ms, 'test/subset_precision'), 100)}"
            pm, pp = PAPER_L2X[rel][k]
            row += [ours if ms else MISSING, f"{pm} / {pp}"]
        rows.append(row)
    return header, rows


def l2x_ranking(records: list[dict], k: int, aspect: int = 1) -> dict[str, float]:
    """{relaxation: mean subset precision (a fraction)} of the rows with a table run at ``k``, most precise first:
    the L2X table's cells, and the one order the seed-by-seed table and the goals table rank by."""
    groups = l2x_groups(records)
    means = {rel: statistics.fmean(v) for rel, _ in L2X_ROWS
             if (v := [x for x in values(groups.get((rel, k, aspect), []), "test/subset_precision") if finite(x)])}
    return dict(sorted(means.items(), key=lambda item: item[1], reverse=True))


def l2x_seed_runs(records: list[dict], aspect: int = 1) -> dict[tuple[str, int], dict[int, dict]]:
    """{(relaxation, k): {seed: record}} of the table's L2X runs of ``aspect`` with a finite subset precision."""
    runs: dict = defaultdict(dict)
    for r in records:
        if (L2X_PROTOCOL.matches(r) and int(r.get("aspect", 1)) == aspect and isinstance(r.get("seed"), int)
                and finite(r["metrics"].get("test/subset_precision"))):
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
            where = "; ".join(f"{b}: {seed_ranges(ss)}" for b, ss in sorted(builds.items(), key=lambda x: min(x[1])))
            rows.append([str(k), label, f"{ranked.index(rel) + 1} of {len(ranked)}",
                         cell(list(precision[rel].values())),
                         *[f"{precision[rel][s]:.1f}" if s in precision[rel] else "" for s in seeds],
                         f"{sum(d > 0 for d in diffs)} of {len(diffs)}" if diffs else MISSING,
                         interval_cell(diffs), where])
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
        if (L2X_PROTOCOL.matches(r) and int(r.get("aspect", 1)) == aspect and finite(step)
                and isinstance(every, int) and every > 0 and isinstance(last, int)):
            evals[r["relaxation"]].append((step / every, step >= last))
    header = ["relaxation", "runs", "best epoch, median", "best at the last epoch"]
    rows = []
    for label, runs in [(label, evals[rel]) for rel, label in L2X_ROWS if evals.get(rel)] + [
            ("all rows", [e for rel, _ in L2X_ROWS for e in evals.get(rel, [])])]:
        if runs:
            rows.append([label, str(len(runs)), f"{statistics.median(e for e, _ in runs):g}",
                         str(sum(at_last for _, at_last in runs))])
    return header, rows



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
    for r in matching(records, L2X_PROTOCOL):
        table[key(r)].append(r)
    pairs: dict = defaultdict(list)
    for probe in side_records:
        if (probe.get("experiment") != "l2x" or not isinstance(probe.get("config"), dict)
                or l2x_w2v_epochs(probe) != L2X_W2V_EPOCHS):
            continue
        flat = flatten(probe["config"])
        for run in table.get(key(probe), []):
            other = flatten(run["config"])
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
                    if finite(p.get(metric)) and finite(t.get(metric))]
            better = sum((a > b) if higher else (a < b) for a, b in both)
            row += [cell([a for a, _ in both], scale, digits, count=False),
                    cell([b for _, b in both], scale, digits, count=False), f"{better} of {len(both)}"]
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




# --------------------------------------------------------------------------- learning curves

PRECISION = "test/subset_precision"
# Settings in which the runs of one curve may differ: the training-set size and the steps that keep its epochs,
# and what does not change the training.
_FREE = {"seed", "device", "trainer.progress", "trainer.resume", "data.train_fraction", "trainer.max_steps",
         "trainer.eval_every", "data.embeddings"}
PAPER_TRAIN_REVIEWS = 70_000


def aspect_file_mse(record: dict) -> float | None:
    """The held-out MSE on reviews of the aspect's own file: ``test/mse_heldout_aspect_file``, or
    ``test/mse_heldout`` when every held-out review comes from that file (the run then logs only the latter)."""
    metrics, data = record.get("metrics", {}), record.get("data") or {}
    value = metrics.get("test/mse_heldout_aspect_file")
    if value is None and data.get("num_heldout_test") and \
            data.get("num_heldout_test_aspect_file") == data.get("num_heldout_test"):
        value = metrics.get("test/mse_heldout")
    return float(value) if finite(value) else None


def _source(record: dict) -> str:
    """The training files of a run, as a label: "four heldout files" (the default) or their names."""
    files = (record.get("config") or {}).get("data", {}).get("train_files")
    return "four heldout files" if not files else ", ".join(Path(f).name for f in files)


def _epochs(record: dict) -> float | None:
    """Training epochs: steps times batch size over training reviews; None when the record lacks one of them."""
    steps = (record["config"].get("trainer") or {}).get("max_steps")
    batch = (record["config"].get("data") or {}).get("batch_size")
    n = (record.get("data") or {}).get("num_train")
    return int(steps) * int(batch) / int(n) if steps and batch and n else None


def curves(records: list[dict], k: int = 10, aspect: int = 1) -> dict[tuple, dict[int, list[dict]]]:
    """{(relaxation, training files, epochs (rounded), embeddings sha256, the other settings): {num_train: [record,
    ...]}} for every group of L2X runs at ``k`` and ``aspect`` with a held-out aspect-file MSE that spans two
    training-set sizes or more."""
    groups: dict[tuple, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if (r.get("experiment") != "l2x" or int(r.get("k") or 0) != k or int(r.get("aspect", 1)) != aspect
                or not isinstance(r.get("config"), dict) or aspect_file_mse(r) is None or _epochs(r) is None):
            continue
        flat = flatten(r["config"])
        same = tuple(sorted((name, repr(value)) for name, value in flat.items() if name not in _FREE))
        key = (r["relaxation"], _source(r), round(_epochs(r)), l2x_build(r), same)
        groups[key][int(r["data"]["num_train"])].append(r)
    return {key: dict(sizes) for key, sizes in groups.items() if len(sizes) >= 2}


def power_law(points: list[tuple[int, float]]) -> tuple[float, float]:
    """(A, b) of ``y = A n^-b`` fitted by least squares on log y against log n; ``points``: (n, y), two or more
    distinct n."""
    xs, ys = [math.log(n) for n, _ in points], [math.log(y) for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return math.exp(my - slope * mx), -slope


def summarise(groups: dict[tuple, dict[int, list[dict]]], target: int = PAPER_TRAIN_REVIEWS) -> list[dict]:
    """One entry per curve: its sizes with mean/sd (MSE ×100, precision %) and the seeds, and the power-law
    extrapolation of each seed's MSE to ``target`` reviews (mean and sd over seeds)."""
    names = dict(L2X_ROWS)
    out = []
    for (rel, source, epochs, build, _), sizes in sorted(groups.items(), key=lambda kv: kv[0][:3]):
        entry: dict = {"relaxation": rel, "row": names.get(rel, rel), "train_files": source, "epochs": epochs,
                       "embeddings_sha256": build, "sizes": []}
        per_seed: dict[int, list[tuple[int, float]]] = defaultdict(list)
        for n in sorted(sizes):
            runs = sorted(sizes[n], key=lambda r: r.get("seed", 0))
            mse = [aspect_file_mse(r) * 100 for r in runs]
            prec = [r["metrics"][PRECISION] * 100 for r in runs if finite(r["metrics"].get(PRECISION))]
            entry["sizes"].append({
                "num_train": n, "seeds": [r.get("seed") for r in runs],
                "mse_x100": mse, "mse_x100_mean": statistics.fmean(mse),
                "mse_x100_sd": statistics.stdev(mse) if len(mse) > 1 else None,
                "precision_pct": prec, "precision_pct_mean": statistics.fmean(prec) if prec else None,
                "precision_pct_sd": statistics.stdev(prec) if len(prec) > 1 else None})
            for r, m in zip(runs, mse):
                per_seed[int(r.get("seed", 0))].append((n, m))
        fits = {s: power_law(p) for s, p in sorted(per_seed.items()) if len({n for n, _ in p}) >= 2}
        at_target = [a * target ** -b for a, b in fits.values()]
        entry["extrapolation"] = {
            "target_num_train": target, "seeds": list(fits), "exponent_b": [b for _, b in fits.values()],
            "mse_x100": at_target, "mse_x100_mean": statistics.fmean(at_target) if at_target else None,
            "mse_x100_sd": statistics.stdev(at_target) if len(at_target) > 1 else None}
        out.append(entry)
    return out


def learning_curve_table(summary: list[dict]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) for Markdown: per curve, one row per training-set size (held-out aspect-file MSE ×100 and
    subset precision %, mean ± sd over its seeds) and a last row with the power law's MSE at the target size."""
    header = ["relaxation", "training files", "epochs", "training reviews", "seeds", "aspect-file MSE ×100",
              "precision %"]
    rows = []
    for e in summary:
        head = [e["row"], e["train_files"], str(e["epochs"])]
        for s in e["sizes"]:
            rows.append(head + [f"{s['num_train']:,}", ", ".join(str(x) for x in s["seeds"]),
                                cell(s["mse_x100"], digits=2, count=False),
                                cell(s["precision_pct"], digits=1, count=False)])
        ext = e["extrapolation"]
        rows.append(head + [f"{ext['target_num_train']:,} (power law per seed)",
                            ", ".join(str(x) for x in ext["seeds"]) or MISSING,
                            cell(ext["mse_x100"], digits=2, count=False), MISSING])
    return header, rows


