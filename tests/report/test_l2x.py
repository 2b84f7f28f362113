"""The L2X tables: the paper's table, seed by seed, best epochs, paired side runs, learning curves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.report import cells, figures, l2x, render
from experiments.report.cells import MISSING
from experiments.report.records import load_records, read_records
from experiments.report.tables import all_tables, goals_table
from tests.report.helpers import REPO, _write, script


def test_l2x_tables_split_by_embeddings(tmp_path: Path):
    res = tmp_path / "results"
    for name, data in (("cur", {"w2v": {"epochs": l2x.L2X_W2V_EPOCHS}}),
                       ("old", {"w2v": {"epochs": l2x.L2X_PREVIOUS_W2V_EPOCHS}}),
                       ("own", {"w2v": {"epochs": l2x.L2X_W2V_EPOCHS}, "embeddings": "/x/emb.txt"})):
        _write(res / f"{name}.json", experiment="l2x", relaxation="corr_topk", estimator="relaxed", k=10, aspect=1,
               metrics={"test/mse": 0.01, "test/subset_precision": {"cur": 0.5, "old": 0.4, "own": 0.9}[name]},
               config={"data": data})
    records = load_records([res])
    assert [l2x.l2x_w2v_epochs(r) for r in records] == [20, 5, None]  # cur, old, own
    tables = {n: render.markdown(*t) for n, (_, t) in all_tables(records).items()}
    corr = {n: next(line for line in tables[n].splitlines() if line.startswith("| Corr.")) for n in ("l2x", "l2x_w2v5")}
    assert "/ 50.0 (n=1)" in corr["l2x"] and "/ 40.0 (n=1)" in corr["l2x_w2v5"]  # supplied embeddings: neither
    assert figures.l2x_series(records)["corr_topk"]["precision"] == [(10, 50.0, 0.0)]
    assert figures.l2x_series(records, w2v_epochs=5)["corr_topk"]["precision"] == [(10, 40.0, 0.0)]


def test_l2x_table_follows_the_default_embeddings():
    import yaml

    cfg = yaml.safe_load((REPO / "configs" / "experiment" / "l2x.yaml").read_text())
    assert cfg["data"]["w2v"]["epochs"] == l2x.L2X_W2V_EPOCHS != l2x.L2X_PREVIOUS_W2V_EPOCHS


def test_l2x_seeds_table(tmp_path: Path):
    res = tmp_path / "results"
    runs = {("corr_topk", 0): (0.50, "aa"), ("corr_topk", 1): (0.62, "aa"), ("corr_topk", 3): (0.55, "bb"),
            ("ef_topk", 0): (0.52, "aa"), ("ef_topk", 1): (0.58, "aa"), ("ef_topk", 2): (0.70, "bb"),
            ("ef_topk", 3): (float("nan"), "bb")}
    for (rel, seed), (prec, build) in runs.items():
        _write(res / f"{rel}{seed}.json", experiment="l2x", relaxation=rel, estimator="relaxed", k=10, aspect=1,
               seed=seed, data={"embeddings_sha256": build * 32}, metrics={"test/subset_precision": prec})
    _write(res / "side.json", experiment="l2x", relaxation="corr_topk", estimator="relaxed", k=10, aspect=1, seed=5,
           metrics={"test/subset_precision": 0.9}, table=False)
    header, rows = l2x.l2x_seeds_table(load_records([res]))
    assert header == ["k", "relaxation", "place", "precision %", "seed 0", "seed 1", "seed 2", "seed 3",
                      "Corr. Top k higher on", "Corr. Top k minus row [95% CI]", "embeddings build: seeds"]
    # E.F.'s NaN seed 3 is left out; Corr. Top k is ahead of it on seed 1 of the shared 0 and 1 (margins -2, +4)
    assert rows == [
        ["10", "E.F. Ent. Top k", "1 of 2", "60.0 ± 9.2 (n=3)", "52.0", "58.0", "70.0", "", "1 of 2",
         "+1.0 [-37.1, +39.1]", "aaaaaaaa: 0-1; bbbbbbbb: 2"],
        ["10", "Corr. Top k", "2 of 2", "55.7 ± 6.0 (n=3)", "50.0", "62.0", "", "55.0", MISSING,
         MISSING, "aaaaaaaa: 0-1; bbbbbbbb: 3"]]
    # the goals table ranks by the same means (E.F.'s NaN run left out there too)
    records = load_records([res])
    ranking = l2x.l2x_ranking(records, 10)
    assert list(ranking) == ["ef_topk", "corr_topk"] and ranking["ef_topk"] == pytest.approx(0.6)
    goals = {r[0]: r[2] for r in goals_table(records)[1]}
    assert goals["L2X, aroma: Corr. Top k first in subset precision at every k"] == \
        "k = 10: 2nd of 2, -4.3 to E.F. Ent. Top k"
    assert l2x.l2x_ranking(records, 5) == {}
    assert cells.seed_ranges([8, 0, 1, 2, 5, 7]) == "0-2, 5, 7-8"
    # differences 1, 2, 3: mean 2, sd 1, t(0.975, 2) = 4.303
    assert cells.interval_cell([1.0, 2.0, 3.0]) == "+2.0 [-0.5, +4.5]"
    assert cells.interval_cell([1.5]) == "+1.5" and cells.interval_cell([]) == MISSING
    with pytest.raises(ValueError, match="diffs"):
        cells.paired_interval([])


def test_l2x_best_epoch_table(tmp_path: Path):
    res = tmp_path / "results"
    trainer = {"eval_every": 775, "max_steps": 7750}  # the protocol's ten epochs
    for name, rel, step in (("a", "corr_topk", 2325), ("b", "corr_topk", 7750), ("c", "corr_topk", 4650),
                            ("d", "ef_topk", 7750), ("e", "ef_topk", float("nan"))):
        _write(res / f"{name}.json", experiment="l2x", relaxation=rel, estimator="relaxed", k=10, aspect=1,
               metrics={"test/subset_precision": 0.5, "best/step": step},
               config={"trainer": trainer, "data": {"w2v": {"epochs": l2x.L2X_W2V_EPOCHS}}})
    _write(res / "noconfig.json", experiment="l2x", relaxation="ef_topk", estimator="relaxed", k=10, aspect=1,
           metrics={"test/subset_precision": 0.5, "best/step": 775}, protocol=False)
    header, rows = l2x.l2x_best_epoch_table(load_records([res]))
    assert header == ["relaxation", "runs", "best epoch, median", "best at the last epoch"]
    assert rows == [["E.F. Ent. Top k", "1", "10", "1"], ["Corr. Top k", "3", "6", "1"], ["all rows", "4", "8", "2"]]


def test_l2x_tau_table_pairs_probes_with_the_same_seeds_table_runs(tmp_path: Path):
    res = tmp_path / "results"
    data = {"w2v": {"epochs": l2x.L2X_W2V_EPOCHS}, "bucket_batches": 50, "train_fraction": 1.0}

    def run(name: str, seed: int, tau: float, prec: float, mse: float, table: bool = True, build: str = "aaa",
            **data_extra) -> None:
        _write(res / f"{name}.json", experiment="l2x", relaxation="corr_topk", estimator="relaxed", k=10, aspect=1,
               seed=seed, table=table, metrics={"test/subset_precision": prec, "best/valid/mse": mse},
               data={"embeddings_sha256": build},
               config={"seed": seed, "relaxation": {"tau": tau}, "experiment": {"tau": tau},
                       "data": {**data, **data_extra}})

    run("t0", 0, 1.0, 0.50, 0.020)
    run("t1", 1, 1.0, 0.52, 0.019)
    run("p0", 0, 3.0, 0.56, 0.021, table=False)
    run("p1", 1, 3.0, 0.50, 0.018, table=False)
    run("p2", 2, 3.0, 0.60, 0.020, table=False)  # no table run of seed 2: unpaired
    run("p0_half", 0, 3.0, 0.70, 0.020, table=False, train_fraction=0.5)  # another setting too: unpaired
    run("p1_build", 1, 3.0, 0.90, 0.010, table=False, build="bbb")  # another build of the embeddings: unpaired
    records, side = load_records([res]), load_records([res], side=True)
    assert len(records) == 2 and len(side) == 5
    pairs = l2x.l2x_side_pairs(records, side, "relaxation.tau")
    assert list(pairs) == [("corr_topk", 10, 1, 3.0)]
    assert [s for s, _, _ in pairs[("corr_topk", 10, 1, 3.0)]] == [0, 1]
    header, rows = l2x.l2x_tau_table(records, side)
    assert rows == [["Corr. Top k", "10", "3", "0, 1", "53.0 ± 4.2", "51.0 ± 1.4", "1 of 2", "1.95 ± 0.21",
                     "1.95 ± 0.07", "1 of 2"]]
    assert "l2x_tau" in all_tables(records, side)


def test_l2x_steps_table_pairs_longer_runs_and_not_temperature_probes(tmp_path: Path):
    res = tmp_path / "results"

    def run(name: str, seed: int, steps: int, tau: float, metrics: dict, table: bool = True) -> None:
        _write(res / f"{name}.json", experiment="l2x", relaxation="ef_topk", estimator="relaxed", k=5, aspect=1,
               seed=seed, table=table, metrics=metrics,
               config={"seed": seed, "relaxation": {"tau": tau}, "trainer": {"max_steps": steps},
                       "data": {"w2v": {"epochs": l2x.L2X_W2V_EPOCHS}}})

    run("t0", 0, 7750, 1.0, {"test/subset_precision": 0.5, "best/valid/mse": 0.02,
                             "test/mse_heldout_aspect_file": 0.03})
    run("t1", 1, 7750, 1.0, {"test/subset_precision": 0.6, "best/valid/mse": 0.02})
    run("s0", 0, 15500, 1.0, {"test/subset_precision": 0.6, "best/valid/mse": 0.01,
                              "test/mse_heldout_aspect_file": 0.02, "best/step": 150}, table=False)
    run("s1", 1, 15500, 1.0, {"test/subset_precision": 0.5, "best/valid/mse": 0.03}, table=False)
    run("tau0", 0, 7750, 3.0, {"test/subset_precision": 0.9, "best/valid/mse": 0.01}, table=False)
    records, side = load_records([res]), load_records([res], side=True)
    header, rows = l2x.l2x_steps_table(records, side)
    assert header[2] == "steps" and len(header) == 4 + 3 * 3 + 1
    # the aspect-file MSE is in seed 0's pair only; the temperature probe is not a steps pair
    assert rows == [["E.F. Ent. Top k", "5", "15500", "0, 1", "55.0 ± 7.1", "55.0 ± 7.1", "1 of 2", "2.00 ± 1.41",
                     "2.00 ± 0.00", "1 of 2", "2.00", "3.00", "1 of 1", "150, —"]]
    assert list(l2x.l2x_side_pairs(records, side, "relaxation.tau")) == [("ef_topk", 5, 1, 3.0)]
    assert "l2x_steps" in all_tables(records, side)
    with pytest.raises(ValueError, match="relaxation.tau"):
        l2x.l2x_side_pairs(records, side, "optim.lr")


def test_l2x_side_table_leaves_out_pairs_with_a_non_finite_metric(tmp_path: Path):
    res = tmp_path / "results"

    def run(name: str, seed: int, tau: float, prec: float, mse: float, table: bool = True) -> None:
        _write(res / f"{name}.json", experiment="l2x", relaxation="ef_topk", estimator="relaxed", k=10, aspect=1,
               seed=seed, table=table, metrics={"test/subset_precision": prec, "best/valid/mse": mse},
               config={"seed": seed, "relaxation": {"tau": tau},
                       "data": {"w2v": {"epochs": l2x.L2X_W2V_EPOCHS}}})

    run("t0", 0, 1.0, 0.50, 0.020)
    run("t1", 1, 1.0, 0.50, 0.020)
    run("p0", 0, 3.0, 0.60, 0.010, table=False)
    run("p1", 1, 3.0, float("nan"), 0.010, table=False)  # a failed metric: neither better nor counted
    records, side = read_records([res])
    assert (len(records), len(side)) == (2, 2)
    _, rows = l2x.l2x_tau_table(records, side)
    assert rows == [["E.F. Ent. Top k", "10", "3", "0, 1", "60.0", "50.0", "1 of 1", "1.00 ± 0.00", "2.00 ± 0.00",
                     "2 of 2"]]


def test_l2x_pairwise_table_pairs_runs_by_their_pairwise_head(tmp_path: Path):
    res = tmp_path / "results"

    def run(name: str, seed: int, head: str, prec: float, table: bool = True, offset: float = 0.0,
            relaxation: str = "corr_topk") -> None:
        _write(res / f"{name}.json", experiment="l2x", relaxation=relaxation, estimator="relaxed", k=10, aspect=1,
               seed=seed, table=table,
               metrics={"test/subset_precision": prec, "best/valid/mse": 0.02, "test/mse_heldout_aspect_file": 0.03},
               config={"seed": seed, "model": {"pairwise": head, "pairwise_offset": offset, "filters": 100},
                       "data": {"w2v": {"epochs": l2x.L2X_W2V_EPOCHS}}})

    run("t0", 0, "conv", 0.50)
    run("t1", 1, "conv", 0.40)
    run("a0", 0, "attract", 0.60, table=False)
    run("a1", 1, "attract", 0.60, table=False)
    run("s0", 0, "scalar", 0.45, table=False)
    run("f0", 0, "fixed", 0.70, table=False, offset=2)
    run("c0", 0, "conv", 0.70, table=False, offset=2)
    run("et0", 0, "conv", 0.50, relaxation="ef_topk")
    run("ea0", 0, "attract", 0.90, table=False, relaxation="ef_topk")  # no pairwise logits there: not in the table
    records, side = load_records([res]), load_records([res], side=True)
    pairs = l2x.l2x_side_pairs(records, side, "model.pairwise")
    assert sorted(pairs) == [("corr_topk", 10, 1, v) for v in ("attract", "conv, offset 2", "fixed, offset 2",
                                                               "scalar")] + [("ef_topk", 10, 1, "attract")]
    header, rows = l2x.l2x_pairwise_table(records, side)
    assert header[2] == "head"
    assert [r[:7] for r in rows] == [["Corr. Top k", "10", "attract", "0, 1", "60.0 ± 0.0", "45.0 ± 7.1", "2 of 2"],
                                     ["Corr. Top k", "10", "conv, offset 2", "0", "70.0", "50.0", "1 of 1"],
                                     ["Corr. Top k", "10", "fixed, offset 2", "0", "70.0", "50.0", "1 of 1"],
                                     ["Corr. Top k", "10", "scalar", "0", "45.0", "50.0", "0 of 1"]]
    assert "l2x_pairwise" in all_tables(records, side)
    # the figure: E.F. Ent. Top k's table runs of the paired seeds first, the table's conv head last
    run("e5", 5, "conv", 0.55, relaxation="ef_topk")  # a seed without paired Corr. Top k runs: left out
    records = load_records([res])
    cols = figures.pairwise_columns(records, side)
    assert list(cols) == ["E.F. Ent. Top k", "fixed, offset 2", "attract", "conv, offset 2", "scalar", "conv (table)"]
    assert sorted(cols["E.F. Ent. Top k"]) == [0] and sorted(cols["conv (table)"]) == [0, 1]
    out = figures.plot_l2x_pairwise(records, side, tmp_path / "heads.png")
    assert out.stat().st_size > 1000
    with pytest.raises(ValueError, match="k=15"):
        figures.plot_l2x_pairwise(records, side, tmp_path / "none.png", k=15)


def test_l2x_learning_curve_groups_runs_that_differ_only_in_size(tmp_path: Path):
    res = tmp_path / "results"

    def run(name: str, seed: int, n: int, mse: float, table: bool = False, lr: float = 1e-3,
            files: list | None = None) -> None:
        steps = 10 * n // 40  # ten epochs of batch 40 at every size
        _write(res / f"{name}.json", experiment="l2x", relaxation="corr_topk", estimator="relaxed", k=10, aspect=1,
               seed=seed, table=table, data={"num_train": n, "embeddings_sha256": "aaa"}, protocol=False,
               metrics={"test/mse_heldout_aspect_file": mse, "test/subset_precision": 0.5},
               config={"seed": seed, "optim": {"lr": lr}, "trainer": {"max_steps": steps, "eval_every": steps // 10},
                       "data": {"batch_size": 40, "train_fraction": n / 4000, "train_files": files}})

    # MSE = 0.4 n^-0.25 on seed 0, twice that on seed 1 (the power law is exact there)
    for seed, scale in ((0, 1.0), (1, 2.0)):
        for n in (1000, 4000):
            run(f"s{seed}_{n}", seed, n, scale * 0.4 * n ** -0.25, table=n == 4000)
    run("lr", 0, 1000, 0.01, lr=1e-4)  # another setting: a group of one size, no curve
    run("a1", 0, 500, 0.05, files=["beer/reviews.aspect1.heldout.txt.gz"])  # other files: no curve either
    only = {"num_heldout_test": 9, "num_heldout_test_aspect_file": 9}  # every held-out review from the aspect file
    assert l2x.aspect_file_mse({"metrics": {"test/mse_heldout": 0.03}, "data": only}) == 0.03
    assert l2x.aspect_file_mse({"metrics": {"test/mse_heldout": 0.03},
                                               "data": {**only, "num_heldout_test_aspect_file": 3}}) is None
    records, side = read_records([res])
    groups = l2x.curves(records + side)
    assert len(groups) == 1 and sorted(next(iter(groups.values()))) == [1000, 4000]
    (entry,) = l2x.summarise(groups, target=16000)
    assert entry["train_files"] == "four heldout files" and entry["epochs"] == 10
    assert [s["seeds"] for s in entry["sizes"]] == [[0, 1], [0, 1]]
    ext = entry["extrapolation"]
    assert ext["seeds"] == [0, 1] and all(abs(b - 0.25) < 1e-9 for b in ext["exponent_b"])
    expected = [40 * 16000 ** -0.25, 80 * 16000 ** -0.25]  # x100
    assert all(abs(a - b) < 1e-9 for a, b in zip(ext["mse_x100"], expected))
    header, rows = l2x.learning_curve_table([entry])
    assert header[3:6] == ["training reviews", "seeds", "aspect-file MSE ×100"]
    assert [r[3:5] for r in rows] == [["1,000", "0, 1"], ["4,000", "0, 1"], ["16,000 (power law per seed)", "0, 1"]]
    assert rows[0][5] == f"{60 * 1000 ** -0.25:.2f} ± {20 * 2 ** 0.5 * 1000 ** -0.25:.2f}"
    assert "l2x_learning_curve" in all_tables(records, side)
    out = tmp_path / "curve"
    assert script("l2x_learning_curve").main(["--results", str(res), "-o", str(out)]) == 0
    assert json.loads(out.with_suffix(".json").read_text())["curves"][0]["relaxation"] == "corr_topk"
    assert out.with_suffix(".png").stat().st_size > 1000
    assert script("l2x_learning_curve").main(["--results", str(res), "--k", "5", "-o", str(out)]) == 1
    with pytest.raises(ValueError, match="--target"):
        script("l2x_learning_curve").main(["--results", str(res), "--target", "0"])
