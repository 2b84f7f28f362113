"""The figures: the L2X table, margins, the temperature sweep, the VAE curves."""

from __future__ import annotations

from pathlib import Path

from experiments.report import figures
from experiments.report.records import load_records
from tests.report.helpers import _records, _write, script


def test_plot_l2x(tmp_path: Path):
    res = _records(tmp_path) / "l2x"
    _write(res / "c2.json", experiment="l2x", relaxation="corr_topk", estimator="relaxed", k=10, aspect=1,
           metrics={"test/mse": 0.02, "test/subset_precision": 0.5, "test/mse_heldout_aspect_file": 0.03})
    _write(res / "side.json", experiment="l2x", relaxation="corr_topk", estimator="relaxed", k=5, aspect=1,
           metrics={"test/subset_precision": 0.9}, table=False)
    data = figures.l2x_series(load_records([res]))
    corr = data["corr_topk"]
    assert [k for k, _, _ in corr["precision"]] == [10]  # the side run at k=5 is left out
    k, mean, sd = corr["precision"][0]
    assert abs(mean - 55.0) < 1e-9 and abs(sd - 7.0710678) < 1e-6
    assert corr["mse"] == [(10, 3.0, 0.0)]  # only the record that has the comparable MSE
    assert corr["paper_precision"][1] == (10, 53.1, 0.9) and data["l2x"]["precision"] == []
    out = tmp_path / "table.png"
    assert script("plot_l2x").main(["--results", str(res), "-o", str(out)]) == 0
    assert out.stat().st_size > 1000


def test_plot_l2x_margins(tmp_path: Path):
    res = tmp_path / "results"
    for rel, seed, prec in (("corr_topk", 0, 0.50), ("corr_topk", 1, 0.56), ("ef_topk", 0, 0.48), ("ef_topk", 1, 0.52),
                            ("l2x", 2, 0.40)):
        _write(res / f"{rel}{seed}.json", experiment="l2x", relaxation=rel, estimator="relaxed", k=10, aspect=1,
               seed=seed, metrics={"test/subset_precision": prec})
    records = load_records([res])
    rows = dict((label, (ours, paper)) for label, ours, paper in figures.l2x_margins(records)[10])
    mean, low, high = rows["E.F. Ent. Top k"][0]  # margins +2 and +4: mean 3, t(0.975, 1) * 1.414 / 1.414
    assert abs(mean - 3.0) < 1e-9 and abs(high - mean - 12.706) < 1e-3 and abs(mean - low - 12.706) < 1e-3
    assert abs(rows["E.F. Ent. Top k"][1] - (53.1 - 32.8)) < 1e-9
    assert rows["L2X"][0] is None  # no seed shared with Corr. Top k
    out = tmp_path / "margins.png"
    assert script("plot_l2x_margins").main(["--results", str(res), "-o", str(out)]) == 0
    assert out.stat().st_size > 1000


def test_plot_sweep(tmp_path: Path):
    for i, (tau, seed) in enumerate([(0.5, 0), (0.5, 1), (1.0, 0)]):
        _write(tmp_path / "multi" / str(i) / "metrics.json", experiment="nri", relaxation="spanning_tree",
               estimator="relaxed", metrics={"test/elbo": -1000.0 - i},
               config={"relaxation": {"tau": tau}, "seed": seed})
    assert script("plot_sweep").main([str(tmp_path / "multi")]) == 0
    assert (tmp_path / "multi" / "sweep.png").stat().st_size > 1000


def test_vae_curves(tmp_path: Path):
    import json

    from experiments.report.vae import load_run, read_curve

    runs = []
    for name, offset in (("a", 0.0), ("b", 5.0)):
        run = tmp_path / name
        run.mkdir()
        lines = [{"step": s, "train/neg_elbo": 200.0 - s / 10 + offset} for s in (5, 10, 15, 20)]
        lines += [{"step": 10, "valid/neg_elbo": 190.0 + offset}, {"step": 20, "valid/neg_elbo": 185.0 + offset}]
        lines += [{"step": 20, "valid/neg_elbo": 180.0 + offset}]  # a resumed run repeats a step: keep the last
        (run / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
        (run / "metrics.json").write_text(json.dumps({"relaxation": "gumbel_softmax", "estimator": name,
                                                      "metrics": {"test/neg_elbo": 181.0 + offset}}))
        runs.append(run)
    curve = read_curve(runs[0] / "history.jsonl")
    assert curve == {"step": [10, 20], "train/neg_elbo": [199.25, 198.25], "valid/neg_elbo": [190.0, 180.0]}
    out = figures.plot_vae_curves([runs[0], runs[1] / "metrics.json"], tmp_path / "curves.png")
    assert out.stat().st_size > 1000
    # one panel per latent: a Bernoulli run beside the categorical ones
    record = json.loads((runs[1] / "metrics.json").read_text())
    (runs[1] / "metrics.json").write_text(json.dumps({**record, "relaxation": "binary_concrete"}))
    run = load_run(runs[1])
    assert (run["relaxation"], run["estimator"]) == ("binary_concrete", "b")
    assert run["label"] == "binary_concrete / b (test 186.0)"
    assert figures.plot_vae_curves(runs, tmp_path / "two.png").stat().st_size > 1000

