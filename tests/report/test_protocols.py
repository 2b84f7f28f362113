"""Table protocols (issue 50): a record enters a cell only when its config follows the table's protocol, every
record left out is named on stderr with the reason, and ``make_tables --runs`` never changes a goal's status from
records off the protocol."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from experiments.report import nri, tables
from experiments.report.cells import MISSING
from experiments.report.protocol import NO_CONFIG, Protocol, admit
from experiments.report.records import RESULTS, read_records
from tests.conftest import compose_cfg
from tests.report.helpers import _write, script

NRI_GOALS = ("NRI, T = 10, spanning tree: test ELBO", "NRI, T = 10, spanning tree: edge precision %")


def _run_config(experiment: str) -> dict:
    """The resolved config a run of ``experiment=<experiment>`` records in its metrics.json."""
    return OmegaConf.to_container(compose_cfg([f"experiment={experiment}", "logger=none"]), resolve=True)


def _nri_run(folder: Path, seed: int, elbo: float, config: dict) -> None:
    """A finished NRI spanning-tree run's metrics.json, as the trainer writes it (its config as given)."""
    _write(folder / "metrics.json", protocol=False, experiment="nri", relaxation="spanning_tree", estimator="relaxed",
           seed=seed, timesteps=10, finished=True, step=config["trainer"]["max_steps"],
           command=f"python run.py experiment=nri_quick seed={seed}", config=config,
           metrics={"test/elbo": elbo, "test/edge_precision_released": 0.95, "test/edge_recall_released": 0.95,
                    "test/edge_precision": 0.95})


def _goals(out: str) -> dict[str, str]:
    """{goal: status} from make_tables' Markdown output."""
    rows = [line.split(" | ") for line in out.splitlines() if line.startswith("| NRI, T = 10")]
    return {row[0].lstrip("| "): row[-1].rstrip(" |") for row in rows}


def test_nri_quick_runs_stay_out_of_the_paper_cell_and_goals(tmp_path: Path, capsys):
    """The issue's reproducer: two nri_quick runs (5 vertices, 1,000 training steps at -811 ± 100) read with --runs
    filled the paper's NRI T = 10 spanning-tree cell and turned both NRI spanning-tree goals to "met"."""
    quick = _run_config("nri_quick")
    quick["trainer"]["max_steps"] = 1000
    runs = tmp_path / "multirun" / "nri"
    for seed, elbo in ((0, -740.0), (1, -882.0)):
        _nri_run(runs / str(seed), seed, elbo, quick)
    empty = tmp_path / "results"
    empty.mkdir()
    make_tables = script("make_tables")

    assert make_tables.main(["--results", str(empty)]) == 0
    before = _goals(capsys.readouterr().out)
    assert make_tables.main(["--results", str(empty), "--runs", str(runs)]) == 0
    out, err = capsys.readouterr()
    tree = next(line for line in out.splitlines() if line.startswith("| Spanning tree"))
    assert tree.split(" | ")[1] == MISSING and "-811" not in out
    assert _goals(out) == before and all(_goals(out)[g] == "no run" for g in NRI_GOALS)
    for seed in (0, 1):  # each run named, with every setting it differs in
        line = next(x for x in err.splitlines() if f"experiment=nri_quick seed={seed}" in x)
        for why in ("data.num_vertices=5 (protocol: 10)", "data.num_train=10000 (protocol: 50000)",
                    "model.encoder_hidden=64 (protocol: 256)", "trainer.max_steps=1000 (protocol: 50000)",
                    "data.batch_size=32 (protocol: 128)"):
            assert why in line, line
        assert line.startswith("left out: nri spanning_tree/relaxed T=10") and "'NRI, T = 10'" in line

    paper = _run_config("nri")  # a run of the paper's protocol does enter the cell and the goals
    _nri_run(runs / "paper", 2, -1000.0, paper)
    assert make_tables.main(["--results", str(empty), "--runs", str(runs)]) == 0
    out, _ = capsys.readouterr()
    assert "-1000 (n=1)" in next(line for line in out.splitlines() if line.startswith("| Spanning tree"))
    assert _goals(out)["NRI, T = 10, spanning tree: test ELBO"] == "met"


def test_protocol_mismatches_name_each_setting():
    protocol = Protocol("toy", "nri", {"data.num_vertices": 10, "model.kl_edges": "directed"},
                        absent={"model.kl_edges": "undirected"})
    record = {"experiment": "nri", "config": {"data": {"num_vertices": 10}, "model": {"kl_edges": "directed"}}}
    assert protocol.matches(record)
    assert protocol.mismatches({**record, "config": {"data": {"num_vertices": 5}}}) == [
        "data.num_vertices=5 (protocol: 10)", "model.kl_edges=undirected (protocol: directed)"]
    assert protocol.mismatches({**record, "config": {"model": {"kl_edges": "directed"}}}) == [
        "no data.num_vertices in its config (protocol: 10)"]
    assert protocol.mismatches({"experiment": "nri"}) == [NO_CONFIG]
    assert protocol.mismatches({**record, "experiment": "vae"}) == ["experiment=vae (protocol: nri)"]
    assert protocol.derive("T = 20", data__timesteps=20).settings["data.timesteps"] == 20
    admitted, left = admit([record, {"experiment": "other"}, {**record, "config": None, "run_dir": "r"}], [protocol])
    assert admitted == [record, {"experiment": "other"}] and left == [
        f"nri None/None seed ? (r): off the protocol of 'toy': {NO_CONFIG}"]


def test_a_cell_for_another_protocol_is_a_few_lines():
    """The later "NRI at CPU scale" table: its protocol is one derivation of the paper's; its runs follow it, and
    neither protocol takes the other's runs."""
    cpu = nri.NRI_PROTOCOL.derive("NRI at CPU scale", data__num_train=10_000, data__batch_size=32,
                                  model__encoder_hidden=64, model__decoder_hidden=64, trainer__max_steps=2000,
                                  model__prediction_steps=1)
    cpu_run = {"experiment": "nri", "config": _run_config("nri_cpu")}
    paper_run = {"experiment": "nri", "config": _run_config("nri")}
    assert cpu.matches(cpu_run) and not cpu.matches(paper_run)
    assert nri.NRI_PROTOCOL.matches(paper_run) and not nri.NRI_PROTOCOL.matches(cpu_run)


def test_every_committed_table_record_follows_its_protocol():
    records, _ = read_records([RESULTS])
    assert records and admit(records, tables.PROTOCOLS)[1] == []
