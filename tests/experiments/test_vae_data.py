"""MNIST idx reading, checksums, download errors and binarisation (tiny files made here; no network)."""

from __future__ import annotations

import gzip
import hashlib
import io
import urllib.error

import numpy as np
import pytest
import torch

from experiments.common.data import resolve_data_root
from experiments.vae import data as vdata
from experiments.vae.data import CorruptDataError, IdxFile, binarize, locate, read_idx, split_train_valid, write_idx


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)


@pytest.mark.parametrize("name", ["tiny-idx3-ubyte", "tiny-idx3-ubyte.gz"])
def test_read_idx_roundtrip_gz_and_raw(tmp_path, images, name):
    path = write_idx(tmp_path / name, images)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    out = read_idx(path)
    assert out.dtype == np.uint8 and out.shape == (5, 28, 28)
    np.testing.assert_array_equal(out, images)


def test_read_idx_other_dtypes(tmp_path):
    labels = np.arange(7, dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "l-idx1-ubyte", labels)), labels)
    floats = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "f.gz", floats)), floats)
    ints = np.array([[1, -2], [300000, 4]], dtype=np.int32)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "i", ints)), ints)


def test_read_idx_header_bytes(tmp_path):
    # hand-made file: magic 0x00000801, one dimension of size 3, payload 7 8 9
    path = tmp_path / "hand-idx1-ubyte"
    path.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))
    np.testing.assert_array_equal(read_idx(path), [7, 8, 9])


def test_read_idx_wrong_magic(tmp_path, images):
    bad = tmp_path / "bad-idx3-ubyte.gz"
    bad.write_bytes(gzip.compress(b"\x08\x03\x00\x00" + images.tobytes()))
    with pytest.raises(CorruptDataError, match="wrong magic.*bad-idx3-ubyte.gz|bad-idx3-ubyte.gz.*wrong magic"):
        read_idx(bad)


def test_read_idx_truncated_and_bad_gzip(tmp_path, images):
    path = write_idx(tmp_path / "t-idx3-ubyte", images)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CorruptDataError, match="shape"):
        read_idx(path)
    gz = write_idx(tmp_path / "t.gz", images)
    gz.write_bytes(gz.read_bytes()[:40])
    with pytest.raises(CorruptDataError, match="gzip"):
        read_idx(gz)
    unknown = tmp_path / "u"
    unknown.write_bytes(bytes([0, 0, 0x42, 1, 0, 0, 0, 1, 5]))
    with pytest.raises(CorruptDataError, match="type code"):
        read_idx(unknown)


def _spec_for(path, name):
    payload = path.read_bytes()
    return IdxFile(name, hashlib.sha256(payload).hexdigest(), hashlib.md5(payload).hexdigest(),
                   hashlib.sha256(gzip.decompress(payload)).hexdigest())


def test_locate_verifies_checksums(tmp_path, images):
    folder = tmp_path / "mnist" / "MNIST" / "raw"
    folder.mkdir(parents=True)
    gz = write_idx(folder / "tiny-idx3-ubyte.gz", images)
    spec = _spec_for(gz, "tiny-idx3-ubyte")
    assert locate(spec, tmp_path) == gz
    # raw file only: checked against the raw sha256
    raw_dir = tmp_path / "other"
    raw_dir.mkdir()
    raw = raw_dir / "tiny-idx3-ubyte"
    raw.write_bytes(gzip.decompress(gz.read_bytes()))
    assert locate(spec, raw_dir) == raw
    # corrupt: one byte changed -> checksum error naming the file and both checksums
    data = bytearray(gz.read_bytes())
    data[-1] ^= 0xFF
    gz.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"corrupt data file .*tiny-idx3-ubyte.gz.*expected {spec.gz_sha256}"):
        locate(spec, tmp_path)


def test_locate_missing_file_clear_error(tmp_path):
    spec = vdata.FILES["train_images"]
    with pytest.raises(FileNotFoundError) as err:
        locate(spec, tmp_path, allow_download=False)
    msg = str(err.value)
    assert "train-images-idx3-ubyte.gz" in msg and spec.gz_sha256 in msg and "ossci-datasets" in msg


def test_download_without_network_clear_error(tmp_path, monkeypatch):
    def offline(url, timeout=None):
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(vdata.urllib.request, "urlopen", offline)
    spec = vdata.FILES["test_labels"]
    with pytest.raises(RuntimeError) as err:
        locate(spec, tmp_path, allow_download=True)
    msg = str(err.value)
    assert all(m in msg for m in vdata.MIRRORS) and spec.gz_md5 in msg and "network unreachable" in msg
    assert not list((tmp_path / "mnist" / "MNIST" / "raw").iterdir())  # no partial file left behind


def test_download_checks_md5(tmp_path, monkeypatch, images):
    payload = gzip.compress(b"\x00\x00\x08\x03" + np.array([5, 28, 28], ">u4").tobytes() + images.tobytes())
    good = IdxFile("tiny-idx3-ubyte", hashlib.sha256(payload).hexdigest(), hashlib.md5(payload).hexdigest(), "")
    served = {}

    class Resp(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    def fake(url, timeout=None):
        served[url] = True
        # the first mirror serves a damaged file, the second the right one
        return Resp(payload[:-1] + b"x" if url.startswith(vdata.MIRRORS[0]) else payload)

    monkeypatch.setattr(vdata.urllib.request, "urlopen", fake)
    path = locate(good, tmp_path, allow_download=True)
    assert len(served) == 2 and path.read_bytes() == payload
    np.testing.assert_array_equal(read_idx(path), images)
    assert [p.name for p in path.parent.iterdir()] == ["tiny-idx3-ubyte.gz"]


def test_split_and_binarize():
    grey = torch.arange(100, dtype=torch.uint8).repeat(2, 1).T.contiguous() * 2  # (100, 2)
    tr, va = split_train_valid(grey, 10, seed=0)
    tr2, va2 = split_train_valid(grey, 10, seed=0)
    assert tr.shape == (90, 2) and va.shape == (10, 2)
    assert torch.equal(va, va2) and torch.equal(tr, tr2)
    assert sorted(torch.cat([tr, va])[:, 0].tolist()) == sorted(grey[:, 0].tolist())
    with pytest.raises(ValueError, match="num_valid"):
        split_train_valid(grey, 0, seed=0)
    g = torch.Generator().manual_seed(0)
    full = torch.tensor([[0, 255, 128]], dtype=torch.uint8).repeat(2000, 1)
    b = binarize(full, "dynamic", g)
    assert set(b.unique().tolist()) <= {0.0, 1.0}
    assert b[:, 0].sum() == 0 and b[:, 1].sum() == 2000 and abs(b[:, 2].mean() - 128 / 255) < 0.05
    assert binarize(full[:1], "threshold").tolist() == [[0.0, 1.0, 1.0]]
    assert torch.allclose(binarize(full[:1], "grey"), torch.tensor([[0.0, 1.0, 128 / 255]]))
    with pytest.raises(ValueError, match="binarize"):
        binarize(full, "otsu")


_STAGED = vdata.candidate_dirs(resolve_data_root())[0] / "t10k-images-idx3-ubyte.gz"


@pytest.mark.skipif(not _STAGED.is_file(), reason="staged MNIST not present")
def test_staged_mnist_test_images_verify():
    path = locate(vdata.FILES["test_images"], resolve_data_root())
    arr = read_idx(path)
    assert arr.shape == (10000, 28, 28) and arr.dtype == np.uint8 and arr.max() == 255
