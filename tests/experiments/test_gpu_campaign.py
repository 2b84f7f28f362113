"""scripts/gpu_campaign.py: queue parsing, packing into <= 8 files under 16 MiB, and (slow) two tiny NRI runs on
the CPU with a 1-minute budget, then a resume from the packed files."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "scripts" / "gpu_campaign.py"
TINY_NRI = ("experiment=nri data.num_train=256 data.num_valid=128 data.num_test=128 data.batch_size=32 "
            "model.encoder_hidden=32 model.decoder_hidden=32 eval.batch_size=128 device=cpu")


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_campaign", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_parse_queue_text_and_yaml(tmp_path: Path):
    c = _script()
    q = tmp_path / "a.queue"
    q.write_text("# NRI\n\ntree_s0 experiment=nri relaxation=spanning_tree seed=0 optim.lr=1e-3\n"
                 "indep_s1 experiment=nri relaxation=indep seed=1 logger=wandb\n")
    runs = c.parse_queue(q)
    assert [r.name for r in runs] == ["tree_s0", "indep_s1"]
    assert runs[0].overrides == ["experiment=nri", "relaxation=spanning_tree", "seed=0", "optim.lr=1e-3"]
    cmd = c.command(runs[1], tmp_path / "w", 2.5)
    assert "logger=wandb" in cmd and "logger=none" not in cmd and "device=auto" in cmd
    assert f"hydra.run.dir={tmp_path / 'w' / 'indep_s1'}" in cmd and "trainer.max_minutes=2.500" in cmd
    y = tmp_path / "b.yaml"
    y.write_text("- {name: v0, overrides: [experiment=vae, seed=0]}\n- name: v1\n  overrides: [experiment=vae]\n")
    assert [(r.name, r.overrides) for r in c.parse_queue(y)] == [("v0", ["experiment=vae", "seed=0"]),
                                                                  ("v1", ["experiment=vae"])]
    for text, match in (("a x=1\na y=2\n", "twice"), ("a/b x=1\n", "must match"), ("a -m x=1\n", "no -m"),
                        ("a hydra.run.dir=/x\n", "sets"), ("a trainer.max_minutes=3\n", "sets"),
                        ("a seed\n", "key=value"), ("# nothing\n", "no runs")):
        q.write_text(text)
        with pytest.raises(ValueError, match=match):
            c.parse_queue(q)


def _fake_run(workdir: Path, name: str, finished: bool, mib: float) -> None:
    d = workdir / name
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "config.yaml").write_text("seed: 0\n")
    (d / "metrics.json").write_text(json.dumps({"finished": finished, "step": 7}))
    (d / "history.jsonl").write_text('{"step": 7}\n')
    for f in ("last.pt", "best.pt"):
        (d / f).write_bytes(b"\0" * int(mib * 2**20 / 2))


def test_pack_and_unpack_round_trip(tmp_path: Path):
    c = _script()
    work = tmp_path / "work"
    runs = []
    for i in range(9):  # 9 partial runs of 6 MiB checkpoints: 2 a tarball, 5 tarballs
        _fake_run(work, f"r{i}", finished=i == 8, mib=6)
        runs.append(c.Run(f"r{i}", ["seed=0"], state=c.run_status(work / f"r{i}")))
    state = c.pack(runs, work, tmp_path / "out", {"minutes": 1})
    files = sorted((tmp_path / "out").iterdir())
    assert len(files) <= 8 and all(f.stat().st_size < 16 * 2**20 for f in files)
    assert {"records.tar.gz", "queue_state.json"} <= {f.name for f in files}
    assert state["runs"]["r0"]["status"] == "partial" and state["runs"]["r8"]["status"] == "finished"
    assert all(state["runs"][f"r{i}"]["checkpoints"] for i in range(8)) and not state["dropped"]
    with tarfile.open(tmp_path / "out" / "records.tar.gz") as tar:
        names = tar.getnames()
    assert "r0/metrics.json" in names and "r0/.hydra/config.yaml" in names and not any(n.endswith(".pt") for n in names)
    back = tmp_path / "back"
    assert c.unpack(tmp_path / "out", back)["runs"]["r3"]["step"] == 7
    assert (back / "r3" / "last.pt").stat().st_size == (work / "r3" / "last.pt").stat().st_size
    # a needed checkpoint bigger than a packed file may be fails loudly, naming the run
    _fake_run(work, "huge", finished=False, mib=40)
    with pytest.raises(ValueError, match="huge"):
        c.plan_checkpoints([c.Run("huge", [], state={"status": "partial"})], work, 6)


@pytest.mark.slow
def test_campaign_end_to_end_on_cpu_with_resume(tmp_path: Path):
    """Two tiny NRI runs at once for a 1-minute slot: one finishes, the other is cut and packed; a second call
    resumes it from the packed files (the finished one is skipped)."""
    queue = tmp_path / "tiny.queue"
    queue.write_text(f"done {TINY_NRI} trainer.max_steps=10 trainer.eval_every=5\n"
                     f"long {TINY_NRI} trainer.max_steps=1000000 trainer.eval_every=20\n")
    env_cmd = [sys.executable, str(SCRIPT), str(queue)]
    slot = ["--minutes", "1", "--jobs", "2", "--margin-s", "25"]  # a loaded 2-core box starts Python slowly
    first = subprocess.run([*env_cmd, str(tmp_path / "out1"), *slot], cwd=REPO, capture_output=True, text=True,
                           timeout=300)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    state1 = json.loads((tmp_path / "out1" / "queue_state.json").read_text())
    assert state1["runs"]["done"]["status"] == "finished", state1
    assert state1["runs"]["long"]["status"] == "partial" and state1["runs"]["long"]["step"] > 0
    assert len(list((tmp_path / "out1").iterdir())) <= 8
    second = subprocess.run([*env_cmd, str(tmp_path / "out2"), *slot, "--resume-from", str(tmp_path / "out1"),
                             "--workdir", str(tmp_path / "fresh")], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "done: finished already; skipped" in second.stdout
    state2 = json.loads((tmp_path / "out2" / "queue_state.json").read_text())
    assert state2["runs"]["done"]["status"] == "finished"
    long1, long2 = state1["runs"]["long"], state2["runs"]["long"]
    assert long2["status"] == "partial" and long2["step"] > long1["step"]
    log = (tmp_path / "fresh" / "long" / "campaign.log").read_text()
    assert "resuming from" in log


@pytest.mark.slow
def test_two_concurrent_runs_with_the_joblib_launcher(tmp_path: Path):
    """docs/gpu.md's packing pattern: ``-m hydra/launcher=joblib hydra.launcher.n_jobs=2``, two seeds at once, each
    in its own sweep folder with its own record."""
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "run.py", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *TINY_NRI.split(),
           "trainer.max_steps=10", "trainer.eval_every=5", "trainer.progress=false", "logger=none", "seed=0,1",
           f"hydra.sweep.dir={sweep}"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/metrics.json"))]
    assert sorted(r["seed"] for r in records) == [0, 1] and all(r["finished"] for r in records)


def test_a_run_whose_compile_fell_back_is_marked_in_queue_state(tmp_path: Path):
    """The trainer's compile guard writes "compile": "fell back: <reason>" into metrics.json; queue_state.json marks
    the run, and the mark survives a later slot whose resumed segment compiled."""
    c = _script()
    work = tmp_path / "work"
    _fake_run(work, "eager", finished=True, mib=0.01)
    _fake_run(work, "compiled", finished=False, mib=0.01)
    record = {"finished": True, "step": 7, "compile": "fell back: compilation failed: RuntimeError: boom"}
    (work / "eager" / "metrics.json").write_text(json.dumps(record))
    record = {"finished": False, "step": 7, "compile": {"enabled": True, "mode": "reduce-overhead"}}
    (work / "compiled" / "metrics.json").write_text(json.dumps(record))
    runs = [c.Run(name, [], state=c.run_status(work / name)) for name in ("eager", "compiled")]
    state = json.loads(json.dumps(c.pack(runs, work, tmp_path / "out", {})))
    saved = json.loads((tmp_path / "out" / "queue_state.json").read_text())
    assert saved["runs"] == state["runs"]
    assert saved["runs"]["eager"]["compile_fell_back"] == "compilation failed: RuntimeError: boom"
    assert saved["runs"]["eager"]["status"] == "finished" and "compile_fell_back" not in saved["runs"]["compiled"]
    later = c.carry_fallback({"status": "finished", "step": 9}, saved["runs"]["eager"])
    assert later["compile_fell_back"] == "compilation failed: RuntimeError: boom (in an earlier slot)"
    assert c.carry_fallback({"status": "new"}, saved["runs"]["compiled"]) == {"status": "new"}


def test_the_campaign_names_runs_that_fell_back_on_stderr(tmp_path: Path, capsys):
    c = _script()
    work = tmp_path / "work"
    _fake_run(work, "tree_s0", finished=True, mib=0.01)
    record = {"finished": True, "step": 7, "compile": "fell back: the compiled step differs from the eager step"}
    (work / "tree_s0" / "metrics.json").write_text(json.dumps(record))
    queue = tmp_path / "q.queue"
    queue.write_text("tree_s0 experiment=nri seed=0\n")
    assert c.main([str(queue), str(tmp_path / "out"), "--minutes", "1", "--jobs", "1", "--workdir", str(work)]) == 0
    err = capsys.readouterr().err
    assert "COMPILE FELL BACK" in err and "tree_s0 (the compiled step differs from the eager step)" in err
