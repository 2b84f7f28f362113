"""docs/task_interface.md's experiment outside the repository, followed line by line (issue 54, item 5): its files are
written from the page's ``# file:`` blocks into a temporary folder (outside the ``experiments`` package), and its
command runs as printed, with that folder for ``/path/to/my_project``."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

DOC = REPO / "docs" / "task_interface.md"
PLACEHOLDER = "/path/to/my_project"


def _blocks() -> list[tuple[str, str]]:
    """(language, text) of every fenced block of the page."""
    return re.findall(r"```(\w+)\n(.*?)```", DOC.read_text(), re.S)


def write_example(root: Path) -> list[Path]:
    """Write each block labelled ``# file: my_project/...`` (in its first two lines) under ``root``, as it is;
    returns the files."""
    written = []
    for _, text in _blocks():
        labels = [line for line in text.splitlines()[:2] if line.startswith("# file: ")]
        if labels:
            path = root / labels[0].removeprefix("# file: ").split()[0]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            written.append(path)
    return written


def example_command(root: Path) -> tuple[dict[str, str], list[str]]:
    """The page's ``python run.py`` line: its environment assignments and its arguments, with ``root/my_project``
    for the placeholder and this interpreter for ``python``."""
    (line,) = [line for lang, text in _blocks() if lang == "bash" for line in text.splitlines() if "run.py" in line]
    words = shlex.split(line.replace(PLACEHOLDER, str(root / "my_project")))
    env = dict(w.split("=", 1) for w in words[: words.index("python")])
    return env, [sys.executable, *words[words.index("python") + 1:]]


def _run(root: Path, *extra: str) -> subprocess.CompletedProcess:
    env, command = example_command(root)
    return subprocess.run([*command, *extra], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1", **env})


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("outside")
    files = write_example(root)
    assert {p.relative_to(root).as_posix() for p in files} == {
        "my_project/toy_sst/__init__.py", "my_project/toy_sst/task.py", "my_project/configs/experiment/toy.yaml"}
    return root


def test_the_page_s_experiment_trains_from_outside_the_repository(project: Path):
    run_dir = project / "run"
    out = _run(project, f"hydra.run.dir={run_dir}")
    assert out.returncode == 0, out.stderr
    assert "[sst] finished toy / gumbel_softmax / relaxed, seed 0: 300 steps" in out.stdout
    assert "test: accuracy 1" in out.stdout  # as the page says
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["experiment"] == "toy" and record["metrics"]["test/accuracy"] == 1.0
    assert record["config"]["experiment"]["_target_"] == "toy_sst.task.ToyTask"


def test_the_page_s_bad_value_fails_up_front_as_printed(project: Path):
    printed = re.search(r"`(error: data\.num_classes=1 [^`]*)`", DOC.read_text()).group(1)
    out = _run(project, "data.num_classes=1", f"hydra.run.dir={project / 'bad'}")
    assert out.returncode == 2 and out.stderr.splitlines()[0] == printed
    assert not (project / "bad").exists()


def test_a_target_that_is_not_a_task_is_a_config_error():
    from experiments.common.config import ConfigError, validate_config
    from tests.conftest import compose_cfg

    cfg = compose_cfg(["experiment=vae", "+experiment._target_=collections.OrderedDict"])
    with pytest.raises(ConfigError, match=r"experiment._target_='collections.OrderedDict' is not legal: it must be "
                                          r"the dotted path of a Task subclass"):
        validate_config(cfg)
    cfg = compose_cfg(["experiment=vae", "+experiment._target_=no_such_package.Task"])
    with pytest.raises(ConfigError, match=r"cannot be imported .* PYTHONPATH"):
        validate_config(cfg)


def test_a_repository_experiment_needs_no_list_entry():
    """experiments.task_class finds a package by name (no EXPERIMENTS tuple to edit)."""
    from experiments import task_class
    from experiments.common.registry import task_for
    from tests.conftest import compose_cfg

    assert task_for(compose_cfg(["experiment=vae"])) is task_class("vae")
