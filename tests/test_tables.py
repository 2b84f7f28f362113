"""make_tables.py on hand-made records, including missing cells; plot_l2x.py, plot_l2x_pairwise.py and
l2x_learning_curve.py on them; plot_sweep.py on a fake multirun folder."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import l2x_learning_curve  # noqa: E402
import make_tables  # noqa: E402
import plot_l2x  # noqa: E402
import plot_l2x_margins  # noqa: E402
import plot_l2x_pairwise  # noqa: E402
import plot_sweep  # noqa: E402


def _write(path: Path, **record) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def _records(tmp_path: Path) -> Path:
    res = tmp_path / "results"
    for seed, elbo in enumerate([-1000.0, -1100.0]):
        _write(res / "nri" / f"st{seed}.json", experiment="nri", relaxation="spanning_tree", estimator="relaxed",
               timesteps=10, metrics={"test/elbo": elbo, "test/edge_precision": 0.9, "test/edge_recall": 0.9},
               config={"relaxation": {"tau": 1.0}})
    _write(res / "l2x" / "c.json", experiment="l2x", relaxation="corr_topk", estimator="relaxed", k=10, aspect=1,
           metrics={"test/mse": 0.025, "test/subset_precision": 0.6})
    _write(res / "vae" / "g.json", experiment="vae", relaxation="gumbel_softmax", estimator="relaxed",
           metrics={"test/neg_elbo": 100.25})
    _write(res / "bench" / "x.json", name="not a record")
    return res


def test_tables_fill_ours_and_keep_missing(tmp_path: Path):
    records = make_tables.load_records([_records(tmp_path)])
    assert len(records) == 4
    nri = make_tables.markdown(*make_tables.nri_table(records))
    st_row = next(line for line in nri.splitlines() if line.startswith("| Spanning tree"))
    assert "-1050 ± 71 (n=2)" in st_row and "-1080 ± 110" in st_row and "90.0 ± 0.0 (n=2)" in st_row
    indep_row = next(line for line in nri.splitlines() if line.startswith("| Indep."))
    assert indep_row.split(" | ")[1] == make_tables.MISSING
    l2x = make_tables.markdown(*make_tables.l2x_table(records))
    corr = next(line for line in l2x.splitlines() if line.startswith("| Corr."))
    cells = corr.split(" | ")
    assert cells[1] == make_tables.MISSING and cells[3] == "2.50 (n=1) / 60.0 (n=1)"
    assert cells[4] == "2.5±0.1 / 53.1±0.9"
    vae = make_tables.markdown(*make_tables.vae_table(records))
    assert "100.2 (n=1)" in vae or "100.3 (n=1)" in vae
    assert "\\begin{tabular}" in make_tables.latex(*make_tables.vae_table(records), "VAE")


def test_readme_markers_rewritten(tmp_path: Path):
    res = _records(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- table:vae -->\nold\n<!-- /table:vae -->\nend\n")
    make_tables.main(["--results", str(res), "--readme", str(readme)])
    text = readme.read_text()
    assert "old" not in text and "Gumbel-softmax (SST)" in text and text.endswith("end\n")
    readme.write_text("intro\n<!-- table:vae -->\n<!-- /table:vae -->\nend\n")  # empty markers are filled too
    make_tables.main(["--results", str(res), "--readme", str(readme)])
    text = readme.read_text()
    assert "Gumbel-softmax (SST)" in text and text.count("<!-- table:vae -->") == 1
    make_tables.main(["--results", str(res), "--readme", str(readme)])  # idempotent
    assert readme.read_text() == text



def test_tables_spread_over_several_files(tmp_path: Path, capsys):
    res = _records(tmp_path)
    main_md, detail_md, plain_md = tmp_path / "README.md", tmp_path / "detail.md", tmp_path / "plain.md"
    main_md.write_text("<!-- table:vae -->\n<!-- /table:vae -->\n")
    detail_md.write_text("a\n<!-- table:l2x -->\nold\n<!-- /table:l2x -->\nb\n")
    plain_md.write_text("no tables here\n")
    make_tables.main(["--results", str(res), "--readme", str(main_md), str(detail_md), str(plain_md)])
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
        make_tables.main(["--results", str(res), "--readme", str(good), str(md)])
    assert md.read_text() == "<!-- table:vea -->\n<!-- /table:vea -->\n"  # left as it was
    assert good.read_text() == "<!-- table:vae -->\n<!-- /table:vae -->\n"  # and so is the file before it


def test_plot_sweep(tmp_path: Path):
    for i, (tau, seed) in enumerate([(0.5, 0), (0.5, 1), (1.0, 0)]):
        _write(tmp_path / "multi" / str(i) / "metrics.json", experiment="nri", relaxation="spanning_tree",
               estimator="relaxed", metrics={"test/elbo": -1000.0 - i},
               config={"relaxation": {"tau": tau}, "seed": seed})
    assert plot_sweep.main([str(tmp_path / "multi")]) == 0
    assert (tmp_path / "multi" / "sweep.png").stat().st_size > 1000


def test_side_runs_are_left_out():
    rec = {"experiment": "vae", "relaxation": "gumbel_softmax", "estimator": "relaxed", "metrics": {}}
    assert make_tables._is_record(rec) and not make_tables._is_record({**rec, "table": False})


def test_vae_cell_must_not_mix_settings():
    def rec(seed: int, **extra) -> dict:
        return {"experiment": "vae", "relaxation": "binary_concrete", "estimator": "relaxed", "seed": seed,
                "metrics": {"test/neg_elbo": 100.0 + seed}, "run_dir": f"run{seed}",
                "config": {"optim": {"lr": 1e-3, "schedule": "cosine", "lr_min": 1e-5}, "trainer": {"max_steps": 10}},
                **extra}

    same = [rec(0, kl_warmup=20, init="xavier"), rec(1, kl_warmup=20, init="xavier")]
    assert make_tables.vae_groups(same)[("relaxed", "binary_concrete")] == [r["metrics"] for r in same]
    with pytest.raises(ValueError, match=r"binary_concrete/relaxed mixes runs with different anneal\.kl_warmup "
                                         r"\(run0: 20; run1: 0\)"):
        make_tables.vae_groups([rec(0, kl_warmup=20), rec(1)])
    # a record from before a setting existed ran at its default; one without a config (W&B) is not checked
    old = rec(2)
    del old["config"]["optim"]["schedule"], old["config"]["optim"]["lr_min"]
    assert len(make_tables.vae_groups([old, {**rec(3), "config": {**rec(3)["config"], "optim": {"lr": 1e-3}}}])
               [("relaxed", "binary_concrete")]) == 2
    assert len(make_tables.vae_groups([rec(0, init="xavier"), {**rec(1), "config": None}])
               [("relaxed", "binary_concrete")]) == 2


def test_l2x_tables_split_by_embeddings(tmp_path: Path):
    res = tmp_path / "results"
    for name, data in (("cur", {"w2v": {"epochs": make_tables.L2X_W2V_EPOCHS}}),
                       ("old", {"w2v": {"epochs": make_tables.L2X_PREVIOUS_W2V_EPOCHS}}),
                       ("own", {"w2v": {"epochs": make_tables.L2X_W2V_EPOCHS}, "embeddings": "/x/emb.txt"})):
        _write(res / f"{name}.json", experiment="l2x", relaxation="corr_topk", estimator="relaxed", k=10, aspect=1,
               metrics={"test/mse": 0.01, "test/subset_precision": {"cur": 0.5, "old": 0.4, "own": 0.9}[name]},
               config={"data": data})
    records = make_tables.load_records([res])
    assert [make_tables.l2x_w2v_epochs(r) for r in records] == [20, 5, None]  # cur, old, own
    tables = {n: make_tables.markdown(*t) for n, (_, t) in make_tables.all_tables(records).items()}
    corr = {n: next(line for line in tables[n].splitlines() if line.startswith("| Corr.")) for n in ("l2x", "l2x_w2v5")}
    assert "/ 50.0 (n=1)" in corr["l2x"] and "/ 40.0 (n=1)" in corr["l2x_w2v5"]  # supplied embeddings: neither
    assert plot_l2x.series(records)["corr_topk"]["precision"] == [(10, 50.0, 0.0)]
    assert plot_l2x.series(records, w2v_epochs=5)["corr_topk"]["precision"] == [(10, 40.0, 0.0)]


def test_l2x_table_follows_the_default_embeddings():
    import yaml

    cfg = yaml.safe_load((REPO / "configs" / "experiment" / "l2x.yaml").read_text())
    assert cfg["data"]["w2v"]["epochs"] == make_tables.L2X_W2V_EPOCHS != make_tables.L2X_PREVIOUS_W2V_EPOCHS


def test_plot_l2x(tmp_path: Path):
    res = _records(tmp_path) / "l2x"
    _write(res / "c2.json", experiment="l2x", relaxation="corr_topk", estimator="relaxed", k=10, aspect=1,
           metrics={"test/mse": 0.02, "test/subset_precision": 0.5, "test/mse_heldout_aspect_file": 0.03})
    _write(res / "side.json", experiment="l2x", relaxation="corr_topk", estimator="relaxed", k=5, aspect=1,
           metrics={"test/subset_precision": 0.9}, table=False)
    data = plot_l2x.series(make_tables.load_records([res]))
    corr = data["corr_topk"]
    assert [k for k, _, _ in corr["precision"]] == [10]  # the side run at k=5 is left out
    k, mean, sd = corr["precision"][0]
    assert abs(mean - 55.0) < 1e-9 and abs(sd - 7.0710678) < 1e-6
    assert corr["mse"] == [(10, 3.0, 0.0)]  # only the record that has the comparable MSE
    assert corr["paper_precision"][1] == (10, 53.1, 0.9) and data["l2x"]["precision"] == []
    out = tmp_path / "table.png"
    assert plot_l2x.main(["--results", str(res), "-o", str(out)]) == 0
    assert out.stat().st_size > 1000


def test_goals_table(tmp_path: Path):
    records = make_tables.load_records([_records(tmp_path)])
    rows = {r[0]: r[1:] for r in make_tables.goals_table(records)[1]}
    assert rows["NRI, T = 10, spanning tree: test ELBO"] == ["≥ -1080", "-1050 ± 71 (n=2)", "met"]
    assert rows["NRI, T = 10, spanning tree: edge precision %"][2] == "not met, by 1.0"
    assert rows["NRI, T = 10, indep. edges: test ELBO"] == ["≥ -1370", make_tables.MISSING, "no run"]
    assert rows["L2X, aroma, k = 10, Corr. Top k: subset precision %"][1:] == ["60.0 (n=1)", "met"]
    assert rows["L2X, aroma, k = 10, Corr. Top k: MSE ×100 (held-out aspect-file reviews)"][2] == "no run"
    assert rows["VAE, categorical, Gumbel-softmax: test -ELBO"][2] == "met"
    order = "L2X, aroma: Corr. Top k first in subset precision at every k"
    assert rows[order][1:] == [make_tables.MISSING, "no run"]  # Corr. Top k alone: no ordering to judge
    for rel, k, prec in (("ef_topk", 10, 0.5), ("ef_topk", 5, 0.7), ("corr_topk", 5, 0.65)):
        _write(tmp_path / "results" / "l2x" / f"{rel}{k}.json", experiment="l2x", relaxation=rel,
               estimator="relaxed", k=k, aspect=1, metrics={"test/subset_precision": prec})
    rows = {r[0]: r[1:] for r in make_tables.goals_table(make_tables.load_records([tmp_path / "results"]))[1]}
    assert rows[order][1:] == ["k = 5: 2nd of 2, -5.0 to E.F. Ent. Top k; k = 10: 1st of 2, +10.0 to E.F. Ent. Top k",
                               "not met"]
    assert [make_tables._ordinal(n) for n in (1, 2, 3, 4, 11, 12, 23)] == ["1st", "2nd", "3rd", "4th", "11th", "12th",
                                                                           "23rd"]


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
    header, rows = make_tables.l2x_seeds_table(make_tables.load_records([res]))
    assert header == ["k", "relaxation", "place", "precision %", "seed 0", "seed 1", "seed 2", "seed 3",
                      "Corr. Top k higher on", "Corr. Top k minus row [95% CI]", "embeddings build: seeds"]
    # E.F.'s NaN seed 3 is left out; Corr. Top k is ahead of it on seed 1 of the shared 0 and 1 (margins -2, +4)
    assert rows == [
        ["10", "E.F. Ent. Top k", "1 of 2", "60.0 ± 9.2 (n=3)", "52.0", "58.0", "70.0", "", "1 of 2",
         "+1.0 [-37.1, +39.1]", "aaaaaaaa: 0-1; bbbbbbbb: 2"],
        ["10", "Corr. Top k", "2 of 2", "55.7 ± 6.0 (n=3)", "50.0", "62.0", "", "55.0", make_tables.MISSING,
         make_tables.MISSING, "aaaaaaaa: 0-1; bbbbbbbb: 3"]]
    # the goals table ranks by the same means (E.F.'s NaN run left out there too)
    records = make_tables.load_records([res])
    ranking = make_tables.l2x_ranking(records, 10)
    assert list(ranking) == ["ef_topk", "corr_topk"] and ranking["ef_topk"] == pytest.approx(0.6)
    goals = {r[0]: r[2] for r in make_tables.goals_table(records)[1]}
    assert goals["L2X, aroma: Corr. Top k first in subset precision at every k"] == \
        "k = 10: 2nd of 2, -4.3 to E.F. Ent. Top k"
    assert make_tables.l2x_ranking(records, 5) == {}
    assert make_tables._seed_ranges([8, 0, 1, 2, 5, 7]) == "0-2, 5, 7-8"
    # differences 1, 2, 3: mean 2, sd 1, t(0.975, 2) = 4.303
    assert make_tables._interval_cell([1.0, 2.0, 3.0]) == "+2.0 [-0.5, +4.5]"
    assert make_tables._interval_cell([1.5]) == "+1.5" and make_tables._interval_cell([]) == make_tables.MISSING
    with pytest.raises(ValueError, match="diffs"):
        make_tables.paired_interval([])


def test_plot_l2x_margins(tmp_path: Path):
    res = tmp_path / "results"
    for rel, seed, prec in (("corr_topk", 0, 0.50), ("corr_topk", 1, 0.56), ("ef_topk", 0, 0.48), ("ef_topk", 1, 0.52),
                            ("l2x", 2, 0.40)):
        _write(res / f"{rel}{seed}.json", experiment="l2x", relaxation=rel, estimator="relaxed", k=10, aspect=1,
               seed=seed, metrics={"test/subset_precision": prec})
    records = make_tables.load_records([res])
    rows = dict((label, (ours, paper)) for label, ours, paper in plot_l2x_margins.margins(records)[10])
    mean, low, high = rows["E.F. Ent. Top k"][0]  # margins +2 and +4: mean 3, t(0.975, 1) * 1.414 / 1.414
    assert abs(mean - 3.0) < 1e-9 and abs(high - mean - 12.706) < 1e-3 and abs(mean - low - 12.706) < 1e-3
    assert abs(rows["E.F. Ent. Top k"][1] - (53.1 - 32.8)) < 1e-9
    assert rows["L2X"][0] is None  # no seed shared with Corr. Top k
    out = tmp_path / "margins.png"
    assert plot_l2x_margins.main(["--results", str(res), "-o", str(out)]) == 0
    assert out.stat().st_size > 1000


def test_l2x_best_epoch_table(tmp_path: Path):
    res = tmp_path / "results"
    trainer = {"eval_every": 10, "max_steps": 100}
    for name, rel, step in (("a", "corr_topk", 30), ("b", "corr_topk", 100), ("c", "corr_topk", 60),
                            ("d", "ef_topk", 100), ("e", "ef_topk", float("nan"))):
        _write(res / f"{name}.json", experiment="l2x", relaxation=rel, estimator="relaxed", k=10, aspect=1,
               metrics={"test/subset_precision": 0.5, "best/step": step},
               config={"trainer": trainer, "data": {"w2v": {"epochs": make_tables.L2X_W2V_EPOCHS}}})
    _write(res / "noconfig.json", experiment="l2x", relaxation="ef_topk", estimator="relaxed", k=10, aspect=1,
           metrics={"test/subset_precision": 0.5, "best/step": 10})
    header, rows = make_tables.l2x_best_epoch_table(make_tables.load_records([res]))
    assert header == ["relaxation", "runs", "best epoch, median", "best at the last epoch"]
    assert rows == [["E.F. Ent. Top k", "1", "10", "1"], ["Corr. Top k", "3", "6", "1"], ["all rows", "4", "8", "2"]]


def test_l2x_tau_table_pairs_probes_with_the_same_seeds_table_runs(tmp_path: Path):
    res = tmp_path / "results"
    data = {"w2v": {"epochs": make_tables.L2X_W2V_EPOCHS}, "bucket_batches": 50, "train_fraction": 1.0}

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
    records, side = make_tables.load_records([res]), make_tables.load_records([res], side=True)
    assert len(records) == 2 and len(side) == 5
    pairs = make_tables.l2x_side_pairs(records, side, "relaxation.tau")
    assert list(pairs) == [("corr_topk", 10, 1, 3.0)]
    assert [s for s, _, _ in pairs[("corr_topk", 10, 1, 3.0)]] == [0, 1]
    header, rows = make_tables.l2x_tau_table(records, side)
    assert rows == [["Corr. Top k", "10", "3", "0, 1", "53.0 ± 4.2", "51.0 ± 1.4", "1 of 2", "1.95 ± 0.21",
                     "1.95 ± 0.07", "1 of 2"]]
    assert "l2x_tau" in make_tables.all_tables(records, side)


def test_l2x_steps_table_pairs_longer_runs_and_not_temperature_probes(tmp_path: Path):
    res = tmp_path / "results"

    def run(name: str, seed: int, steps: int, tau: float, metrics: dict, table: bool = True) -> None:
        _write(res / f"{name}.json", experiment="l2x", relaxation="ef_topk", estimator="relaxed", k=5, aspect=1,
               seed=seed, table=table, metrics=metrics,
               config={"seed": seed, "relaxation": {"tau": tau}, "trainer": {"max_steps": steps},
                       "data": {"w2v": {"epochs": make_tables.L2X_W2V_EPOCHS}}})

    run("t0", 0, 100, 1.0, {"test/subset_precision": 0.5, "best/valid/mse": 0.02, "test/mse_heldout_aspect_file": 0.03})
    run("t1", 1, 100, 1.0, {"test/subset_precision": 0.6, "best/valid/mse": 0.02})
    run("s0", 0, 200, 1.0, {"test/subset_precision": 0.6, "best/valid/mse": 0.01, "test/mse_heldout_aspect_file": 0.02,
                            "best/step": 150}, table=False)
    run("s1", 1, 200, 1.0, {"test/subset_precision": 0.5, "best/valid/mse": 0.03}, table=False)
    run("tau0", 0, 100, 3.0, {"test/subset_precision": 0.9, "best/valid/mse": 0.01}, table=False)
    records, side = make_tables.load_records([res]), make_tables.load_records([res], side=True)
    header, rows = make_tables.l2x_steps_table(records, side)
    assert header[2] == "steps" and len(header) == 4 + 3 * 3 + 1
    # the aspect-file MSE is in seed 0's pair only; the temperature probe is not a steps pair
    assert rows == [["E.F. Ent. Top k", "5", "200", "0, 1", "55.0 ± 7.1", "55.0 ± 7.1", "1 of 2", "2.00 ± 1.41",
                     "2.00 ± 0.00", "1 of 2", "2.00", "3.00", "1 of 1", "150, —"]]
    assert list(make_tables.l2x_side_pairs(records, side, "relaxation.tau")) == [("ef_topk", 5, 1, 3.0)]
    assert "l2x_steps" in make_tables.all_tables(records, side)
    with pytest.raises(ValueError, match="relaxation.tau"):
        make_tables.l2x_side_pairs(records, side, "optim.lr")


def test_l2x_side_table_leaves_out_pairs_with_a_non_finite_metric(tmp_path: Path):
    res = tmp_path / "results"

    def run(name: str, seed: int, tau: float, prec: float, mse: float, table: bool = True) -> None:
        _write(res / f"{name}.json", experiment="l2x", relaxation="ef_topk", estimator="relaxed", k=10, aspect=1,
               seed=seed, table=table, metrics={"test/subset_precision": prec, "best/valid/mse": mse},
               config={"seed": seed, "relaxation": {"tau": tau},
                       "data": {"w2v": {"epochs": make_tables.L2X_W2V_EPOCHS}}})

    run("t0", 0, 1.0, 0.50, 0.020)
    run("t1", 1, 1.0, 0.50, 0.020)
    run("p0", 0, 3.0, 0.60, 0.010, table=False)
    run("p1", 1, 3.0, float("nan"), 0.010, table=False)  # a failed metric: neither better nor counted
    records, side = make_tables.read_records([res])
    assert (len(records), len(side)) == (2, 2)
    _, rows = make_tables.l2x_tau_table(records, side)
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
                       "data": {"w2v": {"epochs": make_tables.L2X_W2V_EPOCHS}}})

    run("t0", 0, "conv", 0.50)
    run("t1", 1, "conv", 0.40)
    run("a0", 0, "attract", 0.60, table=False)
    run("a1", 1, "attract", 0.60, table=False)
    run("s0", 0, "scalar", 0.45, table=False)
    run("f0", 0, "fixed", 0.70, table=False, offset=2)
    run("c0", 0, "conv", 0.70, table=False, offset=2)
    run("et0", 0, "conv", 0.50, relaxation="ef_topk")
    run("ea0", 0, "attract", 0.90, table=False, relaxation="ef_topk")  # no pairwise logits there: not in the table
    records, side = make_tables.load_records([res]), make_tables.load_records([res], side=True)
    pairs = make_tables.l2x_side_pairs(records, side, "model.pairwise")
    assert sorted(pairs) == [("corr_topk", 10, 1, v) for v in ("attract", "conv, offset 2", "fixed, offset 2",
                                                               "scalar")] + [("ef_topk", 10, 1, "attract")]
    header, rows = make_tables.l2x_pairwise_table(records, side)
    assert header[2] == "head"
    assert [r[:7] for r in rows] == [["Corr. Top k", "10", "attract", "0, 1", "60.0 ± 0.0", "45.0 ± 7.1", "2 of 2"],
                                     ["Corr. Top k", "10", "conv, offset 2", "0", "70.0", "50.0", "1 of 1"],
                                     ["Corr. Top k", "10", "fixed, offset 2", "0", "70.0", "50.0", "1 of 1"],
                                     ["Corr. Top k", "10", "scalar", "0", "45.0", "50.0", "0 of 1"]]
    assert "l2x_pairwise" in make_tables.all_tables(records, side)
    # the figure: E.F. Ent. Top k's table runs of the paired seeds first, the table's conv head last
    run("e5", 5, "conv", 0.55, relaxation="ef_topk")  # a seed without paired Corr. Top k runs: left out
    records = make_tables.load_records([res])
    cols = plot_l2x_pairwise.columns(records, side)
    assert list(cols) == ["E.F. Ent. Top k", "fixed, offset 2", "attract", "conv, offset 2", "scalar", "conv (table)"]
    assert sorted(cols["E.F. Ent. Top k"]) == [0] and sorted(cols["conv (table)"]) == [0, 1]
    out = plot_l2x_pairwise.plot(records, side, tmp_path / "heads.png")
    assert out.stat().st_size > 1000
    with pytest.raises(ValueError, match="k=15"):
        plot_l2x_pairwise.plot(records, side, tmp_path / "none.png", k=15)


def test_l2x_learning_curve_groups_runs_that_differ_only_in_size(tmp_path: Path):
    res = tmp_path / "results"

    def run(name: str, seed: int, n: int, mse: float, table: bool = False, lr: float = 1e-3,
            files: list | None = None) -> None:
        steps = 10 * n // 40  # ten epochs of batch 40 at every size
        _write(res / f"{name}.json", experiment="l2x", relaxation="corr_topk", estimator="relaxed", k=10, aspect=1,
               seed=seed, table=table, data={"num_train": n, "embeddings_sha256": "aaa"},
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
    assert l2x_learning_curve.aspect_file_mse({"metrics": {"test/mse_heldout": 0.03}, "data": only}) == 0.03
    assert l2x_learning_curve.aspect_file_mse({"metrics": {"test/mse_heldout": 0.03},
                                               "data": {**only, "num_heldout_test_aspect_file": 3}}) is None
    records, side = make_tables.read_records([res])
    groups = l2x_learning_curve.curves(records + side)
    assert len(groups) == 1 and sorted(next(iter(groups.values()))) == [1000, 4000]
    (entry,) = l2x_learning_curve.summarise(groups, target=16000)
    assert entry["train_files"] == "four heldout files" and entry["epochs"] == 10
    assert [s["seeds"] for s in entry["sizes"]] == [[0, 1], [0, 1]]
    ext = entry["extrapolation"]
    assert ext["seeds"] == [0, 1] and all(abs(b - 0.25) < 1e-9 for b in ext["exponent_b"])
    expected = [40 * 16000 ** -0.25, 80 * 16000 ** -0.25]  # x100
    assert all(abs(a - b) < 1e-9 for a, b in zip(ext["mse_x100"], expected))
    header, rows = l2x_learning_curve.table([entry])
    assert header[3:6] == ["training reviews", "seeds", "aspect-file MSE ×100"]
    assert [r[3:5] for r in rows] == [["1,000", "0, 1"], ["4,000", "0, 1"], ["16,000 (power law per seed)", "0, 1"]]
    assert rows[0][5] == f"{60 * 1000 ** -0.25:.2f} ± {20 * 2 ** 0.5 * 1000 ** -0.25:.2f}"
    assert "l2x_learning_curve" in make_tables.all_tables(records, side)
    out = tmp_path / "curve"
    assert l2x_learning_curve.main(["--results", str(res), "-o", str(out)]) == 0
    assert json.loads(out.with_suffix(".json").read_text())["curves"][0]["relaxation"] == "corr_topk"
    assert out.with_suffix(".png").stat().st_size > 1000
    assert l2x_learning_curve.main(["--results", str(res), "--k", "5", "-o", str(out)]) == 1
    with pytest.raises(ValueError, match="--target"):
        l2x_learning_curve.main(["--results", str(res), "--target", "0"])
