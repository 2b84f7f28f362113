"""A config error or an interrupt prints one message (a traceback only with HYDRA_FULL_ERROR=1) and leaves no
empty run folder (issue 41, item 6); a failed command in a folder holding a run puts its .hydra files back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.common import errors
from tests.conftest import REPO


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run.py", *args], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HYDRA_FULL_ERROR": "0", **env})


def test_config_error_prints_one_message_and_leaves_no_folder(tmp_path: Path):
    run_dir = tmp_path / "run"
    out = _run(["experiment=l2x", "k=400", f"hydra.run.dir={run_dir}"])
    assert out.returncode == 2
    assert "k=400 is not legal" in out.stderr and "350" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 2
    assert not run_dir.exists()


def test_full_error_shows_the_traceback(tmp_path: Path):
    out = _run(["seed=abc", f"hydra.run.dir={tmp_path / 'run'}"], HYDRA_FULL_ERROR="1")
    assert out.returncode != 0 and "Traceback" in out.stderr and "seed='abc'" in out.stderr
    assert not (tmp_path / "run").exists()


def _fake_hydra(monkeypatch, run_dir: Path) -> None:
    monkeypatch.setattr(errors, "_hydra_run", lambda: (run_dir, False, "experiment=vae seed=1"))


def _hydra_folder(run_dir: Path, config: str) -> None:
    (run_dir / ".hydra").mkdir(parents=True)
    for name in errors.HYDRA_FILES:
        (run_dir / ".hydra" / name).write_text(config)


def test_interrupt_before_any_checkpoint_removes_the_folder(tmp_path: Path, monkeypatch, capsys):
    run_dir = tmp_path / "outputs" / "vae" / "run1"
    _hydra_folder(run_dir, "seed: 1\n")
    monkeypatch.chdir(tmp_path)
    _fake_hydra(monkeypatch, run_dir)
    with pytest.raises(SystemExit) as exit_info, errors.user_errors():
        raise KeyboardInterrupt
    assert exit_info.value.code == 130
    assert not (tmp_path / "outputs").exists()  # the empty parents go too
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err


def test_interrupt_after_a_checkpoint_keeps_the_folder_and_says_how_to_resume(tmp_path: Path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    _hydra_folder(run_dir, "seed: 1\n")
    (run_dir / "last.pt").write_bytes(b"x")
    _fake_hydra(monkeypatch, run_dir)
    with pytest.raises(SystemExit), errors.user_errors():
        raise KeyboardInterrupt
    assert run_dir.is_dir()
    assert f"python run.py experiment=vae seed=1 hydra.run.dir={run_dir}" in capsys.readouterr().err


def test_refused_command_in_a_run_folder_puts_its_hydra_files_back(tmp_path: Path, monkeypatch):
    run_dir = tmp_path / "run"
    _hydra_folder(run_dir, "relaxation: gumbel_softmax\n")
    (run_dir / "last.pt").write_bytes(b"x")
    errors.save_hydra_files(run_dir)  # as save_last does
    for name in errors.HYDRA_FILES:  # Hydra writes the new command's files at start
        (run_dir / ".hydra" / name).write_text("relaxation: binary_concrete\n")
    _fake_hydra(monkeypatch, run_dir)
    with pytest.raises(SystemExit) as exit_info, errors.user_errors():
        raise errors.ResumeError("refusing to resume")
    assert exit_info.value.code == 2
    assert (run_dir / ".hydra" / "config.yaml").read_text() == "relaxation: gumbel_softmax\n"


def test_outside_hydra_errors_pass_through():
    with pytest.raises(errors.ConfigError), errors.user_errors():
        raise errors.ConfigError("x")
