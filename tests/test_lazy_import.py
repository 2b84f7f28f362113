"""``import sst`` leaves ``torch._dynamo`` and numba unloaded; ``sst.estimators`` and ``sst.diagnostics`` load on
first use, numba with the first kernel call (issue 54, item 3). Import times are measured by
benchmarks/bench_import.py, not asserted here."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO

HEAVY = ("torch._dynamo", "numba")


def _run(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_sst_loads_neither_dynamo_nor_numba():
    code = (
        "import json, sys\n"
        "import sst\n"
        "sst.sample(sst.Categorical(), __import__('torch').zeros(1, 4), tau=1.0)  # no numba kernel behind it\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    assert _run(code) == []


def test_estimators_and_diagnostics_load_on_first_use():
    code = (
        "import json, sys\n"
        "import sst\n"
        "lazy = [m for m in ('sst.estimators', 'sst.diagnostics') if m in sys.modules]\n"
        "build = sst.estimators.build\n"
        "from sst import diagnostics, estimators\n"
        "import sst.diagnostics as d2\n"
        "print(json.dumps({'lazy_before': lazy, 'same': estimators.build is build and diagnostics is d2,\n"
        "                  'listed': all(n in dir(sst) for n in ('estimators', 'diagnostics')),\n"
        "                  'estimator': type(estimators.build('reinforce', baseline='ema')).__name__}))\n"
    )
    result = _run(code)
    assert result == {"lazy_before": [], "same": True, "listed": True, "estimator": "Reinforce"}


def test_unknown_attribute_is_an_attribute_error():
    import pytest

    import sst

    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        sst.nonexistent  # noqa: B018
