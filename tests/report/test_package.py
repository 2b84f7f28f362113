"""experiments.report is torch-free: reading records and writing tables needs no deep-learning stack."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

MODULES = ("records", "cells", "nri", "l2x", "vae", "tables", "render", "figures")


def test_the_report_package_imports_no_torch():
    code = ("import sys\n" + "".join(f"import experiments.report.{m}\n" for m in MODULES)
            + "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"  # matplotlib too is imported only when a figure is drawn
