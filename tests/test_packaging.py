"""The library's wheel (issue 54, item 1): distribution ``stochastic-softmax-tricks``, the package ``sst`` alone with
its ``py.typed``, built without leaving anything in the checkout, and importable from a fresh virtual environment
on top of this environment's torch. The repository's own ``experiments`` resolve from the checkout instead."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

import sst
from tests.conftest import REPO

DIST = "stochastic-softmax-tricks"

pytestmark = pytest.mark.skipif(importlib.util.find_spec("flit_core") is None,
                                reason="the build backend flit_core is not installed (requirements.txt pins it)")


def _checkout_entries() -> set[str]:
    return {p.name for p in REPO.iterdir()}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel as ``make wheel`` builds it (no build isolation: offline once requirements.txt is installed)."""
    out = tmp_path_factory.mktemp("wheel")
    before = _checkout_entries()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(REPO)], check=True, capture_output=True, text=True, timeout=300)
    assert _checkout_entries() == before, "building the wheel wrote into the checkout"
    (path,) = out.glob("*.whl")
    return path


def test_wheel_holds_the_library_only(wheel: Path):
    names = zipfile.ZipFile(wheel).namelist()
    info = f"stochastic_softmax_tricks-{sst.__version__}.dist-info"
    assert {n.split("/")[0] for n in names} == {"sst", info}
    assert "sst/py.typed" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    sources = {p.relative_to(REPO).as_posix() for p in (REPO / "sst").rglob("*.py") if "__pycache__" not in p.parts}
    assert sources == {n for n in names if n.endswith(".py")}
    metadata = zipfile.ZipFile(wheel).read(f"{info}/METADATA").decode()
    assert f"Name: {DIST}\n" in metadata and f"Version: {sst.__version__}\n" in metadata
    assert "Requires-Dist: torch" in metadata and 'extra == "fast"' in metadata


def test_wheel_installs_into_a_fresh_venv(wheel: Path, tmp_path: Path):
    """``pip install --no-deps`` into a new venv that sees this environment's packages through a .pth file (a path
    line only: the editable install's own .pth, which names the checkout, is not read from there)."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    ours = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (Path(site) / "repo_packages.pth").write_text("".join(f"{p}\n" for p in ours))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
                   check=True, capture_output=True, text=True, timeout=300)
    code = (
        "import importlib.metadata, importlib.util, json, torch, sst\n"
        "x = sst.sample(sst.Categorical(), torch.zeros(2, 3), tau=1.0)\n"
        f"print(json.dumps({{'file': sst.__file__, 'version': sst.__version__, 'shape': list(x.shape),\n"
        f"                  'dist': importlib.metadata.version({DIST!r}),\n"
        "                  'experiments': importlib.util.find_spec('experiments') is not None}))\n"
    )
    out = subprocess.run([str(python), "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(result["file"]).is_relative_to(Path(site))
    assert result["version"] == result["dist"] == sst.__version__
    assert result["shape"] == [2, 3] and result["experiments"] is False


def test_repository_packages_resolve_from_the_checkout_anywhere(tmp_path: Path):
    """``python scripts/x.py`` puts scripts/ on sys.path, not the root: the editable install's .pth makes
    ``experiments`` importable from the checkout, whatever the working directory (docs/library.md)."""
    script = tmp_path / "probe.py"
    script.write_text("import importlib.util, experiments\nprint(experiments.__file__)\n"
                      "print(importlib.util.find_spec('sst').origin)\n")
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    experiments_file, sst_file = out.stdout.split()
    assert Path(experiments_file) == REPO / "experiments" / "__init__.py"
    assert Path(sst_file) == REPO / "sst" / "__init__.py"


def test_version_is_the_installed_distribution_s():
    import importlib.metadata

    assert sst.__version__ == importlib.metadata.version(DIST)


def _readme_install_lines() -> list[str]:
    """The ``pip install`` lines of the README's shell blocks."""
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    return [line.split("#")[0].strip() for block in blocks for line in block.splitlines()
            if line.strip().startswith("pip install")]


def test_readme_install_line_installs_this_distribution():
    """Each README ``pip install`` line, as printed (``--dry-run``, run in the checkout), resolves to this
    distribution with the extras it names."""
    lines = _readme_install_lines()
    assert lines, "the README prints no pip install line"
    for line in lines:
        args = shlex.split(line)[2:]
        out = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--no-build-isolation",
                              "-q", "--report", "-", *args], cwd=REPO, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        (item,) = json.loads(out.stdout)["install"]
        assert item["metadata"]["name"] == DIST and item["metadata"]["version"] == sst.__version__
        assert item.get("requested_extras") == ["fast"]
