"""scripts/make_tables.py --runs on a sweep: runs of the protocol that differ in a setting are named, not mixed, and
no crash."""

from __future__ import annotations

from pathlib import Path

from tests.report.helpers import _write, script


def test_runs_of_a_sweep_over_the_learning_rate_are_named_not_mixed(tmp_path: Path, capsys):
    runs = tmp_path / "multirun"
    for i, (lr, elbo) in enumerate([(1e-3, 101.0), (1e-3, 103.0), (3e-4, 90.0)]):
        _write(runs / str(i) / "metrics.json", experiment="vae", relaxation="gumbel_softmax", estimator="relaxed",
               seed=i, metrics={"test/neg_elbo": elbo}, run_dir=f"multirun/{i}", config={"optim": {"lr": lr}})
        _write(runs / f"l{i}" / "metrics.json", experiment="l2x", relaxation="corr_topk", estimator="relaxed", k=10,
               aspect=1, seed=i, metrics={"test/mse": 0.02, "test/subset_precision": 0.5 + i / 10},
               run_dir=f"multirun/l{i}", config={"optim": {"lr": lr}})
    _write(runs / "9" / "metrics.json", experiment="vae", relaxation="gumbel_softmax", estimator="relaxed", seed=9,
           metrics={"test/neg_elbo": 50.0}, finished=False, config={"optim": {"lr": 1e-3}})
    empty = tmp_path / "results"
    empty.mkdir()
    assert script("make_tables").main(["--results", str(empty), "--runs", str(runs)]) == 0
    out, err = capsys.readouterr()
    vae_row = next(line for line in out.splitlines() if line.startswith("| Gumbel-softmax (SST)"))
    assert "102.0 ± 1.4 (n=2)" in vae_row  # the run at another rate and the unfinished one are not in the cell
    assert "multirun/2 (optim.lr=0.0003): unlike the other runs of its cell" in err
    assert "multirun/l2 (optim.lr=0.0003)" in err
    l2x_row = next(line for line in out.splitlines() if line.startswith("| Corr. Top k"))
    assert "55.0 ± 7.1 (n=2)" in l2x_row
