"""Prepare the BeerAdvocate data for `experiment=l2x`: check the files, train and cache the word2vec embeddings.

    python scripts/prepare_beer.py                          # defaults of configs/experiment/l2x.yaml
    python scripts/prepare_beer.py data.embedding_dim=50    # any l2x config override

Verifies the checksums of the default files (../shared/data/beer), reads and deduplicates the training reviews,
and trains 200-d gensim word2vec on their text (skip-gram, window 5, min_count 2, 20 epochs, one worker thread
so that a build is the same file each time), written in word2vec text format under data/cache (or
$SST_CACHE_DIR). The build runs once and takes about 14 minutes on one CPU core (13 min 51 s measured on a
2-core AMD EPYC; nearly all of it gensim's training loop, which one worker keeps reproducible); every later run
of the task finds the file there (a run would also build it itself when missing). Prints the split sizes,
vocabulary, embedding file and its sha256.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from experiments.common.data import sha256sum
from experiments.l2x.data import (
    default_embeddings_path,
    ensure_embeddings,
    load_training_reviews,
    read_annotations,
    resolve_files,
    word2vec_files,
)


def compose_l2x(overrides: list[str]):
    """The l2x config as run.py would compose it, with Hydra-style overrides."""
    from hydra import compose, initialize_config_dir

    configs = Path(__file__).resolve().parents[1] / "configs"
    with initialize_config_dir(config_dir=str(configs), version_base="1.3"):
        return compose(config_name="config", overrides=["experiment=l2x", *overrides])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra-style overrides of the l2x config, e.g. data.root=...")
    parser.add_argument("--force", action="store_true", help="retrain the embeddings even when cached")
    args = parser.parse_args(argv)

    cfg = compose_l2x(args.overrides)
    t0 = time.perf_counter()
    train_files, valid_files, test_file = resolve_files(cfg)
    reviews = load_training_reviews(cfg, train_files)
    tokens = sum(len(r.tokens) for r in reviews)
    print(f"training files: {', '.join(p.name for p in train_files)}")
    print(f"distinct training reviews: {len(reviews)} ({tokens} tokens), read in {time.perf_counter() - t0:.1f}s")
    print(f"test file: {test_file} ({len(read_annotations(test_file))} annotated reviews)")
    w2v_files = word2vec_files(cfg, train_files)
    if w2v_files != train_files:
        print(f"word2vec text: {', '.join(p.name for p in w2v_files)} (data.w2v_files)")
        reviews = None
    if not cfg.data.get("embeddings"):
        path = default_embeddings_path(cfg, w2v_files)
        if args.force and path.is_file():
            path.unlink()
        if path.is_file():
            print(f"embeddings already cached: {path}")
    t1 = time.perf_counter()
    path = ensure_embeddings(cfg, w2v_files, reviews, progress=True)
    print(f"embeddings: {path} ({time.perf_counter() - t1:.1f}s)")
    print(f"sha256: {sha256sum(path)} (the README's L2X section gives the default build's)")


if __name__ == "__main__":
    main()
