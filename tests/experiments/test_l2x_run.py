"""End to end: `run.py experiment=l2x` for 20 steps on tiny BeerAdvocate-format files, then scripts/explain.py."""

from __future__ import annotations

import gzip
import json
import os
import random
import subprocess
import sys

import pytest

from tests.conftest import REPO

AROMA = ["citrus", "pine", "hops", "malt", "caramel", "banana", "clove", "grassy", "floral", "sweet"]
OTHER = ["pours", "amber", "head", "lacing", "body", "the", "a", "and", "is", "of", "with", "glass", "bottle",
         "finish", "carbonation", "mouthfeel", "dark", "light", "clear", "nice", "."]


def _review(rng: random.Random) -> tuple[list[str], list[float], list[list[int]]]:
    before = [rng.choice(OTHER) for _ in range(rng.randint(5, 30))]
    smell = ["smells", "of"] + [rng.choice(AROMA) for _ in range(rng.randint(2, 6))] + ["."]
    after = [rng.choice(OTHER) for _ in range(rng.randint(5, 30))]
    aroma = round(sum(AROMA.index(t) for t in smell if t in AROMA) / (9 * (len(smell) - 3)), 2)
    scores = [round(rng.random(), 2), aroma, round(rng.random(), 2), round(rng.random(), 2), round(rng.random(), 2)]
    start = len(before)
    return before + smell + after, scores, [[start, start + len(smell)]]


def make_tiny_beer(root, n_train=240, n_test=30, seed=0):
    """<root>/beer/train.txt.gz (Lei's review lines) and <root>/beer/annotations.json (with aroma spans)."""
    rng = random.Random(seed)
    beer = root / "beer"
    beer.mkdir(parents=True)
    with gzip.open(beer / "train.txt.gz", "wt") as fh:
        for _ in range(n_train):
            tokens, scores, _ = _review(rng)
            fh.write(" ".join(f"{s:.2f}" for s in scores) + "\t" + " ".join(tokens) + "\n")
    with open(beer / "annotations.json", "w") as fh:
        for _ in range(n_test):
            tokens, scores, spans = _review(rng)
            fh.write(json.dumps({"x": tokens, "y": scores, "0": [], "1": spans, "2": [], "3": [], "4": []}) + "\n")
    return root


def test_l2x_corr_topk_20_steps_writes_metrics_and_explains(tmp_path):
    root = make_tiny_beer(tmp_path / "data")
    out = tmp_path / "run"
    env = {**os.environ, "SST_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    cmd = [
        sys.executable, "run.py", "experiment=l2x", "relaxation=corr_topk", "trainer.max_steps=20",
        "trainer.eval_every=10", "logger=none", "device=cpu", f"hydra.run.dir={out}", "trainer.progress=false",
        f"data.root={root}", "data.train_files=[beer/train.txt.gz]", "data.test_file=beer/annotations.json",
        "data.embedding_dim=16", "data.w2v.epochs=2", "data.w2v.workers=1", "html_reviews=3",
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads((out / "metrics.json").read_text())
    assert record["experiment"] == "l2x" and record["relaxation"] == "corr_topk"
    assert record["k"] == 10 and record["aspect"] == 1
    m = record["metrics"]
    assert 0 <= m["test/mse"] < 1 and 0 <= m["test/subset_precision"] <= 1
    d = record["data"]
    assert (d["num_train"], d["num_valid"], d["num_heldout_test"], d["num_test"]) == (192, 24, 24, 30)
    assert 0 <= m["test/mse_heldout"] < 1
    assert record["data"]["embedding_dim"] == 16
    page = (out / "explanations.html").read_text()
    assert page.count("class='review'") == 3 and "<mark>" in page and "<u>" in page
    assert (out / "best.pt").is_file()
    assert list((tmp_path / "cache").glob("beer_word2vec_16d_*.txt"))

    explain = subprocess.run(
        [sys.executable, "scripts/explain.py", "--run", str(out), "Pours amber. It smells of citrus and pine!"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert explain.returncode == 0, explain.stderr[-3000:]
    selected = [line for line in explain.stdout.splitlines() if line.startswith("selected: ")]
    assert len(selected) == 1 and len(selected[0].split()) - 1 == 10  # 10 tokens in the text, k = 10



@pytest.mark.slow
def test_l2x_issue_command_on_the_real_data(tmp_path):
    """The issue's command on ../shared/data/beer (builds the 200-d embeddings first when not cached)."""
    from experiments.common.data import resolve_data_root

    if not (resolve_data_root() / "beer" / "annotations.json").is_file():
        pytest.skip("BeerAdvocate files not present")
    out = tmp_path / "run"
    cmd = [sys.executable, "run.py", "experiment=l2x", "relaxation=corr_topk", "trainer.max_steps=20",
           "trainer.eval_every=10", "logger=none", "device=cpu", f"hydra.run.dir={out}", "trainer.progress=false"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads((out / "metrics.json").read_text())
    d = record["data"]
    assert (d["num_train"], d["num_valid"], d["num_heldout_test"], d["num_test"]) == (31030, 3879, 3879, 994)


def test_length_bucketed_batches(tmp_path, monkeypatch):
    """data.bucket_batches: training batches of similar review lengths, and a training step on them."""
    import torch

    from experiments.l2x.data import PAD_ID
    from experiments.l2x.task import BeerL2XTask, logit_stats
    from tests.conftest import compose_cfg

    root = make_tiny_beer(tmp_path / "data")
    monkeypatch.setenv("SST_CACHE_DIR", str(tmp_path / "cache"))
    cfg = compose_cfg(["experiment=l2x", "relaxation=ef_topk", "logger=none", "device=cpu", f"data.root={root}",
                       "data.train_files=[beer/train.txt.gz]", "data.test_file=beer/annotations.json",
                       "data.embedding_dim=16", "data.w2v.epochs=1", "data.w2v.workers=1", "data.batch_size=8",
                       "data.bucket_batches=4", "trainer.progress=false"])
    task = BeerL2XTask(cfg, torch.device("cpu"))
    batches = task.train_batches(torch.Generator().manual_seed(0))
    spreads = []
    for _ in range(8):
        ids, target = next(batches)
        lengths = (ids != PAD_ID).sum(-1)
        spreads.append(int(lengths.max() - lengths.min()))
    loss, logs = task.training_step((ids, target), 0)
    loss.backward()
    assert torch.isfinite(loss)
    assert "train/unary_logit_sd" in logs and "train/pairwise_logit_mean" not in logs  # ef_topk: no pairwise
    _, unary, _, mask = task.selector_logits(ids)  # the logged scale is over real words only
    stats = logit_stats(unary, unary[:, 1:] - 3.0, mask)
    assert torch.allclose(stats["train/unary_logit_sd"], unary[mask].std(unbiased=False), rtol=1e-4, atol=1e-6)
    pair_mask = mask[:, 1:] & mask[:, :-1]
    assert torch.allclose(stats["train/pairwise_logit_mean"], unary[:, 1:][pair_mask].mean() - 3.0, atol=1e-5)
    # 24 training batches of 8 from reviews of 11 to 70 tokens: sorted buckets of 32 leave little spread
    assert sum(spreads) / len(spreads) < 20


def test_train_fraction_keeps_validation_test_and_embeddings(tmp_path, monkeypatch):
    """data.train_fraction: a seeded share of the training split; validation, test sets and embeddings unchanged."""
    import torch

    from experiments.l2x.data import load_beer, subsample
    from tests.conftest import compose_cfg

    assert subsample([3, 5, 7, 9], 1.0, seed=0) == [3, 5, 7, 9]
    half = subsample(list(range(10, 30)), 0.5, seed=0)
    assert len(half) == 10 and set(half) <= set(range(10, 30)) and half == subsample(list(range(10, 30)), 0.5, 0)
    with pytest.raises(ValueError, match="data.train_fraction"):
        subsample([1, 2], 0.0, seed=0)

    root = make_tiny_beer(tmp_path / "data")
    monkeypatch.setenv("SST_CACHE_DIR", str(tmp_path / "cache"))
    base = ["experiment=l2x", "logger=none", "device=cpu", f"data.root={root}", "data.train_files=[beer/train.txt.gz]",
            "data.test_file=beer/annotations.json", "data.embedding_dim=16", "data.w2v.epochs=1",
            "data.w2v.workers=1"]
    full = load_beer(compose_cfg(base), progress=False)
    part = load_beer(compose_cfg(base + ["data.train_fraction=0.25"]), progress=False)
    assert (part.info["num_train"], full.info["num_train"]) == (48, 192) and part.info["train_fraction"] == 0.25
    full_train = {tuple(r.tokens) for r in full.train.reviews}
    assert {tuple(r.tokens) for r in part.train.reviews} <= full_train
    assert torch.equal(part.valid.ids, full.valid.ids) and torch.equal(part.heldout.ids, full.heldout.ids)
    assert torch.equal(part.test.ids, full.test.ids) and part.embeddings_path == full.embeddings_path


def test_w2v_files_give_a_subset_of_files_the_embeddings_of_all(tmp_path, monkeypatch):
    """data.w2v_files: train on one file with the word vectors trained on several (the aspect-1-only runs)."""
    from experiments.l2x.data import load_beer
    from tests.conftest import compose_cfg

    root = make_tiny_beer(tmp_path / "data")
    make_tiny_beer(tmp_path / "other", seed=1)
    (tmp_path / "other" / "beer" / "train.txt.gz").rename(root / "beer" / "extra.txt.gz")
    monkeypatch.setenv("SST_CACHE_DIR", str(tmp_path / "cache"))
    base = ["experiment=l2x", "logger=none", "device=cpu", f"data.root={root}", "data.test_file=beer/annotations.json",
            "data.embedding_dim=16", "data.w2v.epochs=1", "data.w2v.workers=1"]
    both = load_beer(compose_cfg(base + ["data.train_files=[beer/train.txt.gz,beer/extra.txt.gz]"]), progress=False)
    one = load_beer(compose_cfg(base + ["data.train_files=[beer/train.txt.gz]",
                                        "data.w2v_files=[beer/train.txt.gz,beer/extra.txt.gz]"]), progress=False)
    alone = load_beer(compose_cfg(base + ["data.train_files=[beer/train.txt.gz]"]), progress=False)
    assert one.embeddings_path == both.embeddings_path != alone.embeddings_path
    assert one.info["num_train"] == alone.info["num_train"] < both.info["num_train"]
    assert [p.rsplit("/", 1)[-1] for p in one.info["w2v_files"]] == ["train.txt.gz", "extra.txt.gz"]
