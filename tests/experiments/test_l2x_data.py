"""Loaders for Lei et al.'s BeerAdvocate formats, on tiny files made here."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from experiments.l2x.data import (
    PAD_ID,
    UNK_ID,
    Review,
    deduplicate,
    default_embeddings_path,
    encode,
    read_annotations,
    read_reviews,
    read_word2vec,
    span_mask,
    split_indices,
    vocabulary,
    write_word2vec,
)
from tests.conftest import REPO


def _write(path, lines, gz=False):
    data = "".join(line + "\n" for line in lines).encode()
    if gz:
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_read_reviews(tmp_path, gz):
    path = _write(tmp_path / ("r.txt.gz" if gz else "r.txt"),
                  ["0.70 0.60 0.50 0.40 0.30\tpours a nice amber .", "", "1.0 0.0 0.5 0.5 0.5\tsmells of hops"], gz)
    reviews = read_reviews(path)
    assert [r.tokens for r in reviews] == [["pours", "a", "nice", "amber", "."], ["smells", "of", "hops"]]
    assert reviews[0].scores == [0.7, 0.6, 0.5, 0.4, 0.3]


@pytest.mark.parametrize(
    "bad, message",
    [
        ("0.7 0.6 0.5 0.4 0.3 pours a nice amber", "no tab"),
        ("0.7 0.6 0.5 0.4\tfour scores only", "expected 5 scores"),
        ("0.7 x 0.5 0.4 0.3\tnot a number", "must be numbers"),
        ("0.7 1.6 0.5 0.4 0.3\tout of range", r"\[0, 1\]"),
        ("0.7 0.6 0.5 0.4 0.3\t   ", "empty"),
    ],
)
def test_read_reviews_corrupt_line_names_file_and_line(tmp_path, bad, message):
    path = _write(tmp_path / "r.txt.gz", ["0.70 0.60 0.50 0.40 0.30\tfine review", "1 1 1 1 1\tfine", bad], gz=True)
    with pytest.raises(ValueError, match=message) as err:
        read_reviews(path)
    assert f"{path}:3" in str(err.value)


def test_read_reviews_truncated_gzip(tmp_path):
    path = _write(tmp_path / "r.txt.gz", ["0.7 0.6 0.5 0.4 0.3\tsome words here"] * 200, gz=True)
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(ValueError, match="truncated") as err:
        read_reviews(path)
    assert str(path) in str(err.value)


def test_read_annotations(tmp_path):
    rows = [
        {"x": ["a", "b", "c", "d"], "y": [0.1, 0.2, 0.3, 0.4, 0.5], "0": [[0, 1]], "1": [[1, 3]], "2": [],
         "3": [], "4": [[3, 4]], "raw": "...", "rid": 1},
        {"x": ["e", "f"], "y": [1, 1, 1, 1, 1], "1": []},
    ]
    path = _write(tmp_path / "annotations.json", [json.dumps(r) for r in rows])
    out = read_annotations(path)
    assert out[0].tokens == ["a", "b", "c", "d"] and out[0].scores[1] == 0.2
    assert out[0].spans[1] == [(1, 3)] and out[1].spans[1] == [] and out[1].spans[0] == []


@pytest.mark.parametrize(
    "bad, message",
    [
        ('{"x": ["a"], "y": [0, 0, 0, 0, 0], "1": [[0, 5]]}', "outside"),
        ('{"x": ["a"], "y": [0, 0, 0, 0, 0]', "not valid JSON"),
        ('{"y": [0, 0, 0, 0, 0]}', "'x'"),
        ('{"x": ["a"], "y": [0, 0, 0]}', "expected 5 scores"),
    ],
)
def test_read_annotations_corrupt_line_names_file_and_line(tmp_path, bad, message):
    good = json.dumps({"x": ["a", "b"], "y": [0, 0, 0, 0, 0], "1": [[0, 1]]})
    path = _write(tmp_path / "annotations.json", [good, bad])
    with pytest.raises(ValueError, match=message) as err:
        read_annotations(path)
    assert f"{path}:2" in str(err.value)


@pytest.mark.parametrize("header, gz", [(True, False), (False, True)])
def test_word2vec_roundtrip_and_lei_format(tmp_path, header, gz):
    words = ["the", "hops", "<unk>"]
    vecs = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    if header:
        path = write_word2vec(tmp_path / "v.txt", words, vecs)
    else:  # Lei et al.'s file: no header line, gzipped
        path = _write(tmp_path / "v.txt.gz", [w + " " + " ".join(f"{x:.6g}" for x in v) for w, v in zip(words, vecs)],
                      gz=True)
    got_words, got = read_word2vec(path)
    assert got_words == words
    np.testing.assert_allclose(got, vecs, rtol=1e-5)
    vocab, table = vocabulary(got_words, got)
    assert vocab[:2] == ["<pad>", "<unk>"] and vocab[2:] == ["the", "hops"]
    assert torch.all(table[PAD_ID] == 0)
    torch.testing.assert_close(table[UNK_ID], torch.from_numpy(vecs[2]))


def test_word2vec_corrupt_line(tmp_path):
    path = _write(tmp_path / "v.txt", ["2 3", "a 1 2 3", "b 1 2"])
    with pytest.raises(ValueError, match="3 values") as err:
        read_word2vec(path)
    assert f"{path}:3" in str(err.value)
    path = _write(tmp_path / "w.txt", ["a 1 2 3", "b 1 zz 3"])
    with pytest.raises(ValueError, match=f"{path}:2"):
        read_word2vec(path)


_BUILD = """
import random, sys
from experiments.l2x.data import train_word2vec
rng = random.Random(0)
words = [f"w{i}" for i in range(300)]
texts = [[rng.choice(words[: rng.randint(5, 300)]) for _ in range(rng.randint(3, 40))] for _ in range(2000)]
settings = dict(vector_size=16, window=5, min_count=2, sg=1, negative=5, epochs=2, workers=1, seed=0)
train_word2vec(texts, sys.argv[1], settings, progress=False)
"""


def test_word2vec_one_worker_build_is_bit_reproducible(tmp_path):
    """Two builds with one worker, in interpreters with different hash seeds, write the same file."""
    files = []
    for hash_seed in ("1", "2"):
        files.append(tmp_path / f"v{hash_seed}.txt")
        subprocess.run([sys.executable, "-c", _BUILD, str(files[-1])], cwd=REPO, check=True,
                       env={**os.environ, "PYTHONHASHSEED": hash_seed})
    assert files[0].read_bytes() == files[1].read_bytes()
    words, vecs = read_word2vec(files[0])
    assert vecs.shape == (len(words), 16) and len(words) > 250


def test_word2vec_cache_keeps_reproducible_builds_apart(tmp_path, monkeypatch):
    """The cached file of a one-worker (reproducible) build is not the one of a multi-worker build."""
    monkeypatch.setenv("SST_CACHE_DIR", str(tmp_path))
    train = [_write(tmp_path / "r.txt", ["0.1 0.2 0.3 0.4 0.5\ta b"])]

    def path(workers: int) -> Path:
        return default_embeddings_path(OmegaConf.create({"data": {"w2v": {"workers": workers}}}), train)

    assert path(1) != path(2) and path(2) == path(4)


def test_dedup_split_encode_spans():
    rs = [Review(["a", "b"], [0] * 5), Review(["c"], [1] * 5), Review(["a", "b"], [0.5] * 5)]
    assert [r.tokens for r in deduplicate(rs)] == [["a", "b"], ["c"]]
    tr, va, te = split_indices(100, 0.1, seed=3, test_fraction=0.2)
    assert len(va) == 10 and len(te) == 20 and sorted(tr + va + te) == list(range(100))
    assert (tr, va, te) == split_indices(100, 0.1, seed=3, test_fraction=0.2)
    assert va != split_indices(100, 0.1, seed=4)[1] and split_indices(100, 0.1, seed=3)[1] == va
    ids, lengths = encode([["a", "zzz", "b"], ["b", "a", "a", "a", "a"]], {"a": 2, "b": 3}, max_len=4)
    assert ids.tolist() == [[2, UNK_ID, 3, PAD_ID], [3, 2, 2, 2]] and lengths.tolist() == [3, 4]
    r = Review(["w"] * 6, [0] * 5, {1: [(0, 2), (4, 6)]})
    assert span_mask([r], aspect=1, max_len=5).tolist() == [[True, True, False, False, True]]
    assert not span_mask([r], aspect=0, max_len=5).any()
