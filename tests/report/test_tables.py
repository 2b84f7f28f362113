"""The NRI, VAE and goals tables on hand-made records, missing cells kept missing."""

from __future__ import annotations

from pathlib import Path

from experiments.report import cells, l2x, nri, render, vae
from experiments.report.cells import MISSING
from experiments.report.records import load_records
from experiments.report.tables import goals_table
from tests.report.helpers import _records, _write, protocol_config


def test_tables_fill_ours_and_keep_missing(tmp_path: Path):
    records = load_records([_records(tmp_path)])
    assert len(records) == 4
    nri_md = render.markdown(*nri.nri_table(records))
    st_row = next(line for line in nri_md.splitlines() if line.startswith("| Spanning tree"))
    assert "-1050 ± 71 (n=2)" in st_row and "-1080 ± 110" in st_row and "90.0 ± 0.0 (n=2)" in st_row
    assert st_row.rstrip(" |").endswith("80.0 ± 0.0 (n=2)")  # the sample itself, beside the released metric
    indep_row = next(line for line in nri_md.splitlines() if line.startswith("| Indep."))
    assert indep_row.split(" | ")[1] == MISSING
    l2x_md = render.markdown(*l2x.l2x_table(records))
    corr = next(line for line in l2x_md.splitlines() if line.startswith("| Corr."))
    row = corr.split(" | ")
    assert row[1] == MISSING and row[3] == "2.50 (n=1) / 60.0 (n=1)"
    assert row[4] == "2.5±0.1 / 53.1±0.9"
    vae_md = render.markdown(*vae.vae_table(records))
    assert "100.2 (n=1)" in vae_md or "100.3 (n=1)" in vae_md
    assert "\\begin{tabular}" in render.latex(*vae.vae_table(records), "VAE")


def test_vae_cell_keeps_runs_alike_and_names_the_others():
    def rec(seed: int, **extra) -> dict:
        record = {"experiment": "vae", "relaxation": "binary_concrete", "estimator": "relaxed", "seed": seed,
                  "metrics": {"test/neg_elbo": 100.0 + seed}, "run_dir": f"run{seed}",
                  "config": {"optim": {"lr": 1e-3, "schedule": "cosine", "lr_min": 1e-5}}, **extra}
        return {**record, "config": protocol_config(record)}

    same = [rec(0, kl_warmup=20, init="xavier"), rec(1, kl_warmup=20, init="xavier")]
    assert vae.vae_groups(same)[("relaxed", "binary_concrete")] == [r["metrics"] for r in same]
    # runs that differ in a setting: the cell keeps the most common value and names the others
    cells, left = vae.vae_cells([rec(0, kl_warmup=20), rec(1), rec(2, kl_warmup=20)])
    assert [m["test/neg_elbo"] for m in cells[("relaxed", "binary_concrete")]] == [100.0, 102.0]
    assert left == ["VAE binary_concrete/relaxed: run1 (anneal.kl_warmup=0)"]
    # a record from before a setting existed ran at its default; one without a config cannot show its protocol
    old = rec(2)
    del old["config"]["optim"]["schedule"], old["config"]["optim"]["lr_min"]
    assert len(vae.vae_groups([old, {**rec(3), "config": {**rec(3)["config"], "optim": {"lr": 1e-3}}}])
               [("relaxed", "binary_concrete")]) == 2
    assert len(vae.vae_groups([rec(0, init="xavier"), {**rec(1), "config": None}])
               [("relaxed", "binary_concrete")]) == 1


def test_goals_table(tmp_path: Path):
    records = load_records([_records(tmp_path)])
    rows = {r[0]: r[1:] for r in goals_table(records)[1]}
    assert rows["NRI, T = 10, spanning tree: test ELBO"] == ["≥ -1080", "-1050 ± 71 (n=2)", "met"]
    assert rows["NRI, T = 10, spanning tree: edge precision %"][2] == "not met, by 1.0"
    assert rows["NRI, T = 10, indep. edges: test ELBO"] == ["≥ -1370", MISSING, "no run"]
    assert rows["L2X, aroma, k = 10, Corr. Top k: subset precision %"][1:] == ["60.0 (n=1)", "met"]
    assert rows["L2X, aroma, k = 10, Corr. Top k: MSE ×100 (held-out aspect-file reviews)"][2] == "no run"
    assert rows["VAE, categorical, Gumbel-softmax: test -ELBO"][2] == "met"
    order = "L2X, aroma: Corr. Top k first in subset precision at every k"
    assert rows[order][1:] == [MISSING, "no run"]  # Corr. Top k alone: no ordering to judge
    for rel, k, prec in (("ef_topk", 10, 0.5), ("ef_topk", 5, 0.7), ("corr_topk", 5, 0.65)):
        _write(tmp_path / "results" / "l2x" / f"{rel}{k}.json", experiment="l2x", relaxation=rel,
               estimator="relaxed", k=k, aspect=1, metrics={"test/subset_precision": prec})
    rows = {r[0]: r[1:] for r in goals_table(load_records([tmp_path / "results"]))[1]}
    assert rows[order][1:] == ["k = 5: 2nd of 2, -5.0 to E.F. Ent. Top k; k = 10: 1st of 2, +10.0 to E.F. Ent. Top k",
                               "not met"]
    assert [cells.ordinal(n) for n in (1, 2, 3, 4, 11, 12, 23)] == ["1st", "2nd", "3rd", "4th", "11th", "12th",
                                                                           "23rd"]


def test_nri_cells_take_only_the_released_elbo():
    def rec(seed: int, kl: str | None) -> dict:
        record = {"experiment": "nri", "relaxation": "spanning_tree", "estimator": "relaxed", "seed": seed,
                  "timesteps": 10, "metrics": {"test/elbo": -1000.0 - seed}}
        config = protocol_config(record)
        if kl is None:  # a record from before model.kl_edges: the undirected KL
            del config["model"]["kl_edges"]
        else:
            config["model"]["kl_edges"] = kl
        return {**record, "config": config}

    groups = nri.nri_groups([rec(0, "directed"), rec(1, "undirected"), rec(2, None)])
    assert groups[("spanning_tree", 10, "relaxed")] == [{"test/elbo": -1000.0}]
