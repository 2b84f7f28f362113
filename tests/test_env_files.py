"""requirements.txt and environment.yml pin the same packages."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _requirements() -> list[str]:
    lines = (REPO / "requirements.txt").read_text().splitlines()
    return sorted(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def _environment_pip() -> list[str]:
    import yaml  # shipped with hydra's omegaconf dependency (PyYAML)

    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return sorted(p for p in pip if not p.startswith("-e"))


def test_environment_matches_requirements():
    assert _environment_pip() == _requirements()


def test_torch_pinned():
    assert "torch==2.13.0" in _requirements()


def test_environment_python_311():
    import yaml

    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]


def test_gpu_scripts_parse():
    import subprocess

    for name in ("gpu_checks.sh", "gpu_bundle.sh"):
        subprocess.run(["bash", "-n", str(REPO / "scripts" / name)], check=True)


def test_gpu_bundle_folders_are_ignored():
    ignored = (REPO / ".gitignore").read_text().splitlines()
    assert "/.whl/" in ignored and "/.gpu_data/" in ignored
