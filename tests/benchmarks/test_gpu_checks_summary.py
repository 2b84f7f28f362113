"""benchmarks/gpu_checks_summary.py: packed-run aggregate, TF32 against seed noise, the flat output folder."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from benchmarks.gpu_checks_summary import main, packed_summary, run_summary, summarize, tf32_summary


def bench_record(rate: float, start: float, end: float) -> dict:
    return {"command": "python benchmarks/bench_training.py", "commit": "abc", "hardware": {"device": "cuda"},
            "results": [{"experiment": "nri", "relaxation": "spanning_tree", "compiled": True, "steps_per_s": rate,
                         "timed_window_unix": [start, end], "peak_memory_mib": 100.0}]}


def write_run(folder: Path, losses: list[float], valid: float, monitor: str = "valid/elbo") -> None:
    folder.mkdir(parents=True)
    lines = [json.dumps({"step": 10 * (i + 1), "train/loss": v}) for i, v in enumerate(losses)]
    lines.append(json.dumps({"step": 10 * len(losses), monitor: valid}))
    (folder / "history.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "metrics.json").write_text(json.dumps({"finished": True, "commit": "abc", "wall_time_s": 1.0,
                                                     "metrics": {"train/steps_per_s": 5.0}}))
    (folder / "last.pt").write_bytes(b"x" * 10)


def test_packed_summary_sums_rates_and_measures_overlap():
    s = packed_summary([bench_record(100.0, 0.0, 10.0), bench_record(120.0, 2.0, 12.0)])
    assert s["processes"] == 2 and s["total_steps_per_s"] == 220.0
    assert s["overlap_s"] == 8.0 and s["overlap_fraction"] == 0.8
    with pytest.raises(ValueError, match="no timed row"):
        packed_summary([{"results": [{"error": "boom"}]}])


def test_run_summary_takes_the_last_quarter_and_last_validation(tmp_path):
    write_run(tmp_path / "r", [8.0, 8.0, 8.0, 8.0, 8.0, 8.0, 2.0, 4.0], valid=-5.0)
    s = run_summary(tmp_path / "r", "valid/elbo")
    assert s["train_loss_tail"] == 3.0 and s["tail_steps"] == [70, 80]
    assert s["valid"] == -5.0 and s["valid_step"] == 80 and s["step"] == 80 and s["finished"] is True


def test_tf32_summary_compares_with_the_seed_change():
    def run(loss, valid):
        return {"train_loss_tail": loss, "valid": valid}

    small = tf32_summary({"nri_s0_tf32on": run(10.0, -100.0), "nri_s0_tf32off": run(10.1, -100.2),
                          "nri_s1_tf32on": run(11.0, -103.0)})["nri"]
    assert small["within_noise"] is True and small["tf32"]["train_loss_tail"] == pytest.approx(0.1)
    big = tf32_summary({"vae_s0_tf32on": run(10.0, 100.0), "vae_s0_tf32off": run(15.0, 100.0),  # 5 > 2 x 1
                        "vae_s1_tf32on": run(11.0, 101.0)})["vae"]
    assert big["within_noise"] is False
    cut = tf32_summary({"vae_s0_tf32on": run(10.0, 100.0) | {"step": 2000}, "vae_s0_tf32off": run(15.0, 100.0) | {
        "step": 1500}, "vae_s1_tf32on": run(11.0, 101.0) | {"step": 2000}})["vae"]  # cut by its time limit
    assert cut["short"] == ["vae_s0_tf32off"] and cut["within_noise"] is None
    missing = tf32_summary({"vae_s0_tf32on": run(10.0, 100.0)})["vae"]
    assert missing["within_noise"] is None and "tf32" not in missing


def test_tf32_summary_with_more_seeds_pairs_them_against_the_seed_spread():
    def run(loss, valid):
        return {"train_loss_tail": loss, "valid": valid}

    on = {0: (10.0, 5.0), 1: (12.0, 6.0), 2: (11.0, 4.0)}
    off = {0: (10.5, 5.0), 1: (12.5, 6.0), 2: (11.5, 4.0)}  # TF32 shifts the loss by 0.5 on every seed
    runs = {f"vae_s{s}_tf32on": run(*v) for s, v in on.items()} | {f"vae_s{s}_tf32off": run(*v) for s, v in off.items()}
    e = tf32_summary(runs)["vae"]
    p = e["paired"]["train_loss_tail"]
    assert p["n"] == 3 and p["mean"] == pytest.approx(0.5) and p["rms"] == pytest.approx(0.5) and p["se"] == 0
    assert e["seed_sd"]["train_loss_tail"] == pytest.approx(1.0)  # sd of the off runs' 10.5, 12.5, 11.5
    assert e["tf32"]["train_loss_tail"] == pytest.approx(0.5) and e["seed"]["train_loss_tail"] == pytest.approx(2.0)
    assert e["twin_ratio"]["train_loss_tail"] == pytest.approx(0.5 / 2**0.5, abs=1e-3)
    assert e["within_noise"] is True  # |0.5| <= 2 sqrt(2) x 1 / sqrt(3) = 1.63 for the loss; 0 for the validation
    runs["vae_s2_tf32on"] = run(11.0 - 6.0, 4.0)  # one seed moved by 6: mean shift 2.5 > 1.63
    assert tf32_summary(runs)["vae"]["within_noise"] is False


def test_summarize_leaves_flat_files_without_checkpoints(tmp_path, capsys):
    (tmp_path / "packed").mkdir()
    for i, (rate, start) in enumerate([(100.0, 0.0), (110.0, 1.0)]):
        (tmp_path / "packed" / f"p{i}.json").write_text(json.dumps(bench_record(rate, start, start + 10.0)))
    for name, losses, valid in [("nri_s0_tf32on", [5.0] * 4, -10.0), ("nri_s0_tf32off", [5.1] * 4, -10.1),
                                ("nri_s1_tf32on", [6.0] * 4, -12.0)]:
        write_run(tmp_path / "runs" / name, losses, valid)
    assert main([str(tmp_path), "--device", "cpu"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["packed_cpu.json", "runs.tar.gz", "tf32_cpu.json"]
    packed = json.loads((tmp_path / "packed_cpu.json").read_text())
    assert packed["schema"] == 1 and packed["total_steps_per_s"] == 210.0
    tf32 = json.loads((tmp_path / "tf32_cpu.json").read_text())
    assert tf32["experiments"]["nri"]["within_noise"] is True and str(tmp_path) not in json.dumps(tf32)
    with tarfile.open(tmp_path / "runs.tar.gz") as tar:
        names = tar.getnames()
    assert "nri_s0_tf32on/history.jsonl" in names and not any(n.endswith(".pt") for n in names)
    assert "within noise: True" in capsys.readouterr().out
    assert summarize(tmp_path, "cpu") == {"packed": None, "tf32": None}  # nothing left to summarise


@pytest.mark.slow
def test_gpu_checks_script_end_to_end_on_cpu(tmp_path):
    """scripts/gpu_checks.sh in its CPU smoke mode: every part runs and the folder holds its six flat files."""
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "DEVICE": "cpu", "QUICK": "1", "PACKED": "2", "PYTHON": sys.executable}
    subprocess.run(["bash", str(repo / "scripts" / "gpu_checks.sh"), str(tmp_path / "out")], env=env, check=True,
                   cwd=repo, capture_output=True, timeout=900)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["gpu.txt", "log.txt", "packed_cpu.json", "runs.tar.gz", "tf32_cpu.json", "training_cpu.json"]
    for name in ("packed_cpu.json", "tf32_cpu.json", "training_cpu.json"):
        text = (tmp_path / "out" / name).read_text()
        assert str(tmp_path) not in text
    tf32 = json.loads((tmp_path / "out" / "tf32_cpu.json").read_text())["experiments"]
    assert set(tf32) == {"nri", "vae"} and all(e["within_noise"] is not None for e in tf32.values())
    # two seeds each way in the smoke mode (three on a GPU); on the CPU "on" is TF32's rounding emulated
    assert all(e["on_setting"] == "emulate" and e["paired"]["valid"]["n"] == 2 for e in tf32.values())
    bench = json.loads((tmp_path / "out" / "training_cpu.json").read_text())
    assert bench["complete"] is True and not any("error" in r for r in bench["results"])
