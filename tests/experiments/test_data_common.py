"""Data resolution order, checked file access and in-memory batches."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from experiments.common.data import REPO_ROOT, TensorBatches, require_file, resolve_data_root
from tests.conftest import compose_cfg


def test_data_root_order(tmp_path: Path, monkeypatch):
    cfg = compose_cfg([f"data.root={tmp_path}"])
    assert resolve_data_root(cfg) == tmp_path
    monkeypatch.setenv("SST_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_root(compose_cfg()) == tmp_path / "env"
    monkeypatch.delenv("SST_DATA_DIR")
    shared = REPO_ROOT.parent / "shared" / "data"
    assert resolve_data_root(compose_cfg()) == (shared if shared.is_dir() else REPO_ROOT / "data")


def test_require_file_errors(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=r"missing data file .*abc123.*example\.org"):
        require_file(tmp_path / "x.gz", sha256="abc123", source="https://example.org")
    f = tmp_path / "x.gz"
    f.write_bytes(b"hello")
    with pytest.raises(ValueError, match="corrupt"):
        require_file(f, sha256="0" * 64)
    assert require_file(f, sha256=hashlib.sha256(b"hello").hexdigest()) == f


def test_tensor_batches_cover_epoch():
    x = torch.arange(10)
    batches = iter(TensorBatches([x, x * 2], 5, torch.Generator().manual_seed(0)))
    a, b = next(batches), next(batches)
    assert torch.equal(torch.sort(torch.cat([a[0], b[0]])).values, x)
    assert torch.equal(a[1], a[0] * 2)
    with pytest.raises(ValueError, match="batch_size"):
        TensorBatches([x], 11)


def test_tensor_batches_length_buckets():
    n, bs = 200, 10
    lengths = torch.randint(1, 300, (n,), generator=torch.Generator().manual_seed(1))
    x = torch.arange(n)
    batches = iter(TensorBatches([x], bs, torch.Generator().manual_seed(0), lengths=lengths, bucket_batches=5))
    epoch = torch.cat([next(batches)[0] for _ in range(n // bs)])
    assert torch.equal(torch.sort(epoch).values, x)  # every item once per epoch
    plain = iter(TensorBatches([x], bs, torch.Generator().manual_seed(0)))
    def padded(it):
        return sum(int(lengths[next(it)[0]].max()) for _ in range(n // bs))
    it = iter(TensorBatches([x], bs, torch.Generator().manual_seed(0), lengths=lengths, bucket_batches=5))
    assert padded(it) < 0.8 * padded(plain)  # batches of similar lengths: less padding
    with pytest.raises(ValueError, match="lengths"):
        TensorBatches([x], bs, lengths=lengths[:5])
