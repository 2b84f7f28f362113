"""NRI at CPU scale (experiments.nri.cpu_table, experiments.report.nri_cpu): the protocol's configs, the campaign's
plan (search, selection by validation ELBO, seeds and restarts, extras), the runner (with a fake training), and
the table."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from experiments.nri import cpu_table as ct
from experiments.report import nri_cpu

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")


@pytest.fixture(scope="module")
def searches() -> dict[str, list[ct.Job]]:
    return {row.key: ct.search_jobs(row) for row in ct.ROWS if row.search}


def _protocol_config(overrides: Sequence[str] = ()) -> dict:
    """A run config that follows the CPU protocol (the settings it declares), with ``overrides`` applied."""
    cfg: dict = {}
    ints = ("model.prediction_steps", "trainer.max_steps")
    settings = {**nri_cpu.NRI_CPU_PROTOCOL.settings, **dict(o.split("=", 1) for o in overrides
                                                            if o.split("=", 1)[0] in ints)}
    for key, value in settings.items():
        *parents, leaf = key.split(".")
        node = cfg
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = int(value) if key in ints else value
    return cfg


def _record(job: ct.Job, valid: float, test_elbo: float = -1500.0, precision: float = 0.9,
            complement: float = 0.0) -> dict:
    ov = dict(o.split("=", 1) for o in job.overrides)
    cfg = {**_protocol_config(job.overrides), "optim": {"lr": float(ov.get("optim.lr", 1e-3))},
           "relaxation": {"tau": float(ov.get("relaxation.tau", 1.0)), "eps": float(ov.get("relaxation.eps", 0.01))}}
    return {"experiment": "nri", "relaxation": "x", "estimator": "relaxed", "config": cfg, "wall_time_s": 200.0,
            "metrics": {"best/valid/elbo": valid, "test/elbo": test_elbo, "test/edge_precision": precision,
                        "test/edge_precision_released": precision, "test/edge_recall_released": precision,
                        "test/edge_released_complement": complement},
            "study": ct.STUDY, "row": job.row, "role": job.kind, "seed_index": job.seed_index,
            "restart": job.restart}


def test_protocol_config_is_the_reduced_nri():
    from experiments.nri.search import compose_search

    cfg = compose_search("nri_cpu_search_tree")
    assert (cfg.data.num_vertices, cfg.data.timesteps, cfg.data.num_train, cfg.data.batch_size) == (10, 10, 10000, 32)
    assert (cfg.model.encoder_hidden, cfg.model.decoder_hidden, cfg.model.prediction_steps) == (64, 64, 1)
    assert (cfg.trainer.max_steps, cfg.trainer.eval_every, cfg.model.kl_edges) == (2000, 500, "directed")
    assert cfg.data.seed == 42 and cfg.model.max_range == 15.0 and cfg.relaxation.name == "spanning_tree"
    assert cfg.hydra.sweeper.n_trials == nri_cpu.SEARCH_TRIALS == 12


def test_every_row_gets_the_same_search_budget(searches):
    assert [len(v) for v in searches.values()] == [12, 12, 12]
    tree = [dict(o.split("=", 1) for o in j.overrides) for j in searches["tree"]]
    indep = [dict(o.split("=", 1) for o in j.overrides) for j in searches["indep"]]
    assert [(t["optim.lr"], t["relaxation.tau"]) for t in tree] == [(t["optim.lr"], t["relaxation.tau"]) for t in indep]
    assert all("relaxation.eps" in dict(o.split("=", 1) for o in j.overrides) for j in searches["topk"])
    assert searches["tree"][3].name == "nri_cpu_search_tree_t03"
    assert ct.campaign_size() == 3 * 12 + 5 * 3 * 5 + 3 + 3


def test_plan_waits_for_the_whole_search_then_seeds_the_best_trial(searches):
    state = ct.Campaign()
    assert {j.kind for j in ct.plan(state, searches)} == {"search"}
    trials = searches["indep"]
    for i, job in enumerate(trials[:-1]):
        state.records[job.name] = _record(job, valid=-2000.0 + 10 * i)
    assert {j.row for j in ct.plan(state, searches) if j.kind == "seed"} == set()  # one trial still open
    state.failed[trials[-1].name] = "exit 1: diverged"  # a failed trial ends the search, and is never chosen
    seeds = [j for j in ct.plan(state, searches) if j.kind == "seed"]
    assert {j.row for j in seeds} == {"indep"} and len(seeds) == 15
    best = dict(o.split("=", 1) for o in trials[-2].overrides)  # the best finished trial by validation ELBO
    for job in seeds:
        ov = dict(o.split("=", 1) for o in job.overrides)
        assert (ov["optim.lr"], ov["relaxation.tau"]) == (best["optim.lr"], best["relaxation.tau"])
        assert ov["experiment"] == "nri_cpu" and ov["relaxation"] == "indep"
    run_seeds = [int(dict(o.split("=", 1) for o in j.overrides)["seed"]) for j in seeds]
    assert len(set(run_seeds)) == 15 and min(run_seeds) >= ct.SEED_BASE


def test_extras_take_the_base_rows_setting(searches):
    state = ct.Campaign()
    for row in ("topk", "tree"):
        for i, job in enumerate(searches[row]):
            state.records[job.name] = _record(job, valid=-3000.0 + i)
    jobs = ct.plan(state, searches)
    exact = [dict(o.split("=", 1) for o in j.overrides) for j in jobs if j.row == "topk_exact"]
    assert len(exact) == 15 and all("relaxation.eps" not in ov and ov["relaxation"] == "ef_topk" for ov in exact)
    unclipped = [j for j in jobs if j.row == "tree_unclipped"]
    assert len(unclipped) == 15 and all("model.max_range=null" in j.overrides for j in unclipped)
    multi = [j for j in jobs if j.row == "tree_multistep"]
    assert len(multi) == 3 and all("model.prediction_steps=9" in j.overrides for j in multi)
    long = [j for j in jobs if j.row == "tree_multistep_long"]
    assert len(long) == 3 and all("trainer.max_steps=10000" in j.overrides for j in long)
    assert not [j for j in jobs if j.row == "indep" and j.kind == "seed"]


def test_table_run_is_the_best_restart_by_validation_not_test():
    job = ct.Job("tree_s0_r0", ("optim.lr=0.001", "relaxation.tau=1.0"), "tree", "seed", 0, 0)
    def restart(s: int, r: int, valid: float, test: float) -> dict:
        return _record(ct.Job(f"tree_s{s}_r{r}", job.overrides, "tree", "seed", s, r), valid=valid, test_elbo=test)

    recs = [_record(job, valid=-1500, test_elbo=-1000, precision=0.1, complement=1.0),
            restart(0, 1, -1200, -1300), restart(0, 2, -1600, -900),
            restart(1, 0, -1250, -1400), restart(1, 1, -1300, -1100), restart(1, 2, -1350, -1000),
            restart(2, 0, -1000, -800)]  # seed 2: one restart of three so far, not yet a table run
    assert nri_cpu.RESTARTS == ct.RESTARTS
    runs = nri_cpu.table_runs(recs)
    assert [r["metrics"]["test/elbo"] for r in runs["tree"]] == [-1300, -1400]
    header, rows = nri_cpu.cpu_table(recs)
    tree = rows[[r[0] for r in rows].index("Spanning tree")]
    assert tree[header.index("test ELBO")] == "-1350 ± 71 (n=2)"
    assert tree[-1] == "0/2; 1/7"  # no table run, one finished restart of seven took the negative code
    assert nri_cpu.claims(recs) == []  # the other paper rows have no runs yet


def test_runner_runs_collects_resumes_and_writes_the_table(tmp_path):
    fake = (
        "import json, sys, zlib, pathlib\n"
        "run = pathlib.Path(sys.argv[1]); name = sys.argv[2]; ov = dict(a.split('=', 1) for a in sys.argv[4:])\n"
        "if name == 'nri_cpu_search_topk_t05': sys.exit('diverged')\n"
        "v = -1000.0 - zlib.crc32(name.encode()) % 997\n"
        "cfg = {**json.loads(sys.argv[3]), 'optim': {'lr': float(ov['optim.lr'])}, "
        "'relaxation': {'tau': float(ov['relaxation.tau'])}}\n"
        "if 'relaxation.eps' in ov: cfg['relaxation']['eps'] = float(ov['relaxation.eps'])\n"
        "m = {'best/valid/elbo': v, 'test/elbo': v - 5, 'test/edge_precision': 0.5, "
        "'test/edge_precision_released': 0.6, 'test/edge_recall_released': 0.6, 'test/edge_released_complement': 0}\n"
        "if name.startswith('tree'): m.update({'test/edge_precision_released': 0.95, 'test/edge_precision': 0.95})\n"
        "(run / 'history.jsonl').write_text(json.dumps({'step': 500, 'valid/elbo': v, "
        "'valid/edge_precision': 0.5}) + '\\n')\n"
        "(run / 'metrics.json').write_text(json.dumps({'experiment': 'nri', 'relaxation': ov.get('relaxation', 'x'), "
        "'estimator': 'relaxed', 'config': cfg, 'metrics': m, 'wall_time_s': 1.0, 'command': str(run)}))\n")

    def command(job: ct.Job, run_dir: Path) -> list[str]:
        return [sys.executable, "-c", fake, str(run_dir), job.name, json.dumps(_protocol_config(job.overrides)),
                *(o for o in job.overrides if o.split("=", 1)[0] in ("optim.lr", "relaxation.tau", "relaxation.eps",
                                                                       "relaxation"))]

    work, results = tmp_path / "runs", tmp_path / "results"
    state = ct.run_campaign(work, results, jobs=4, make_command=command, poll_s=0.02)
    assert len(state.records) == ct.campaign_size() - 1 and list(state.failed) == ["nri_cpu_search_topk_t05"]
    assert (work / "nri_cpu_search_topk_t05" / ct.FAILED).read_text().startswith("exit 1")
    assert len(list(results.glob("*.json"))) == ct.campaign_size() - 1
    rec = json.loads((results / "tree_s4_r2.json").read_text())
    assert rec["table"] is False and rec["study"] == ct.STUDY and rec["valid"][0]["step"] == 500

    fail = [sys.executable, "-c", "raise SystemExit(3)"]
    again = ct.run_campaign(work, results, jobs=4, make_command=lambda j, d: fail, poll_s=0.02)  # all ended: none runs
    assert again.records.keys() == state.records.keys()
    table = nri_cpu.write_table(results).read_text()
    assert "NRI at CPU scale" in table and "| Spanning tree |" in table and "95.0 ± 0.0 (n=5)" in table
    assert "Tree precision far above the other rows: holds" in table
    assert (results / "search.png").is_file()


def test_off_protocol_records_are_left_out_with_the_reason():
    job = ct.Job("tree_s0_r0", ("optim.lr=0.001",), "tree", "seed", 0, 0)
    good, bad = _record(job, valid=-1200), _record(job, valid=-1100)
    bad["config"]["data"]["num_vertices"] = 5
    kept, left = nri_cpu.admit_cpu([good, bad, {"experiment": "nri", "metrics": {}}])
    assert kept == [good] and len(left) == 1 and "data.num_vertices=5 (protocol: 10)" in left[0]


def test_a_second_campaign_in_the_same_folder_is_refused(tmp_path):
    (tmp_path / ct.LOCK).write_text(f"{os.getppid()}\n")  # a live process holds it
    with pytest.raises(RuntimeError, match="another campaign"):
        ct.run_campaign(tmp_path, tmp_path / "results", jobs=1, max_runs=0)
    (tmp_path / ct.LOCK).write_text("999999999\n")  # a process that is gone: taken over, released at the end
    ct.run_campaign(tmp_path, tmp_path / "results", jobs=1, max_runs=0)
    assert not (tmp_path / ct.LOCK).exists()


def test_sigterm_stops_a_background_campaign_and_its_runs_save(tmp_path):
    """Started as ``nohup ... &`` (SIGINT ignored, inherited by children), ``kill -TERM`` still stops the campaign,
    and each run gets a SIGINT it acts on (the trainer saves last.pt on it)."""
    import signal
    import subprocess
    import time

    child = ("import pathlib, sys, time\n"
             "try:\n    time.sleep(120)\n"
             "except KeyboardInterrupt:\n    (pathlib.Path(sys.argv[1]) / 'saved').write_text('1')\n    raise\n")
    parent = (f"import sys\nfrom pathlib import Path\nfrom experiments.nri import cpu_table as ct\n"
              f"cmd = lambda job, d: [sys.executable, '-c', {child!r}, str(d)]\n"
              f"ct.run_campaign(Path({str(tmp_path / 'runs')!r}), Path({str(tmp_path / 'res')!r}), jobs=1,"
              f" make_command=cmd, poll_s=0.05)\n")
    proc = subprocess.Popen([sys.executable, "-c", parent], preexec_fn=lambda: signal.signal(signal.SIGINT,
                                                                                             signal.SIG_IGN))
    runs = tmp_path / "runs"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not [p for p in runs.glob("*") if (p / "campaign.log").exists()]:
        time.sleep(0.1)
    time.sleep(1.0)  # the run's interpreter is up
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130
    first = ct.plan(ct.Campaign(), {r.key: ct.search_jobs(r) for r in ct.ROWS if r.search})[0]
    assert [p.parent.name for p in runs.glob("*/saved")] == [first.name]
    assert not (runs / ct.LOCK).exists()


def test_claims_read_off_the_table_runs():
    def seeds(row: str, values: list[tuple[float, float, float]]) -> list[dict]:
        out = []
        for s, (test, precision, complement) in enumerate(values):
            for r in range(nri_cpu.RESTARTS):
                job = ct.Job(f"{row}_s{s}_r{r}", ("optim.lr=0.001",), row, "seed", s, r)
                out.append(_record(job, valid=-1000.0 - r, test_elbo=test, precision=precision, complement=complement))
        return out

    recs = [*seeds("indep", [(-1100, 0.8, 0), (-1080, 0.8, 0)]), *seeds("topk", [(-1090, 0.85, 0), (-1100, 0.85, 0)]),
            *seeds("tree", [(-950, 0.93, 0), (-2200, 0.23, 1)])]
    said = nri_cpu.claims(recs)
    assert said[0].startswith("Tree precision far above the other rows: does not hold")
    assert said[1].startswith("Tree ELBO best of the three: does not hold (best: Indep. edges, -1090")
    assert said[2].startswith("1 of 2 spanning-tree table runs took the negative code") and "93.0% precision" in said[2]
