"""BeerAdvocate data in Lei, Barzilay & Jaakkola's (2016) formats, and the default train/valid/test setup.

File formats (all read line by line; a malformed line raises ``ValueError`` naming the file and line):

- reviews (``reviews.aspect{a}.{train,heldout}.txt[.gz]``): ``s0 s1 s2 s3 s4<TAB>tokenised lower-cased text``,
  five scores in [0, 1] for appearance, aroma, palate, taste, overall.
- annotations (``annotations.json``): one JSON object per line with ``"x"`` (token list), ``"y"`` (five scores)
  and ``"0"`` .. ``"4"`` (lists of ``[start, end)`` token spans about each aspect).
- word vectors (word2vec text format, optionally gzipped, e.g. Lei's ``review+wiki.filtered.200.txt.gz``):
  ``word v1 ... vd`` per line, with or without a leading ``count dim`` header line.

Default setup (PROTOCOLS.md section 2): the paper's training file and embeddings are not available, so
training uses the four ``reviews.aspect{0..3}.heldout.txt.gz`` files, deduplicated by review text
(first occurrence kept, files in order aspect0..3: 38,788 distinct reviews), split by one seeded permutation
(``data.split_seed`` = 1234) into validation (``data.valid_fraction`` = 0.1: 3,879), a held-out test share
(``data.heldout_test_fraction`` = 0.1: 3,879, same distribution as training, used only for the final
``test/mse_heldout``) and training (the remaining 31,030). The main test set is the 994 reviews of
``annotations.json`` (disjoint from the heldout files): ``test/mse`` and ``test/subset_precision``.
Embeddings: 200-d word2vec trained with gensim on the text of the 38,788 training-file reviews (unsupervised:
no scores; never the annotated test reviews), cached under ``experiments.common.data.cache_dir(cfg)``.
``data.train_files`` / ``data.valid_files`` / ``data.test_file`` / ``data.embeddings`` replace any of these
(e.g. with the original ``reviews.aspect1.train.txt.gz``, the heldout file as validation, and
``review+wiki.filtered.200.txt.gz``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from experiments.common.data import cache_dir, require_file, resolve_data_root, sha256sum

SOURCE = "http://people.csail.mit.edu/taolei/beer/ (Lei et al. 2016); see ../shared/data/SOURCES.md"
ASPECTS = ("appearance", "aroma", "palate", "taste", "overall")
PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1

# Default files under <data root>/beer, with their sha256 (see ../shared/data/SOURCES.md).
HELDOUT_FILES = {
    "reviews.aspect0.heldout.txt.gz": "c1cdef0b9e3b08eceb4dd57d87787b6523b3ddae39da9f9977a32f5c288393dd",
    "reviews.aspect1.heldout.txt.gz": "d5dd1d719f80a7637316ebe41e75bb2993557f25e7ccbad5b772d5b6be4e23c4",
    "reviews.aspect2.heldout.txt.gz": "8170d0c5b2804e9ed703e9541ff86319a92bb4e69c60e7c780b2e76f732f1c10",
    "reviews.aspect3.heldout.txt.gz": "31affcba7488183fd420872a57d03ead532b167adf78c926772e5a22656ba312",
}
ANNOTATIONS_FILE = ("annotations.json", "bb7bc1746bd133ce96be4bd46c2d6eaf265ef4a93b9dee3daf363e7c378a13b0")


@dataclass
class Review:
    """One review: its tokens, its five aspect scores and (annotated reviews only) per-aspect token spans."""

    tokens: list[str]
    scores: list[float]
    spans: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    source: str = ""  # name of the file it was read from


def _open_text(path: Path):
    path = Path(path)
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def _lines(path: Path) -> Iterable[tuple[int, str]]:
    """(1-based line number, line without its newline); a truncated gzip stream names the file."""
    try:
        with _open_text(path) as fh:
            for number, line in enumerate(fh, 1):
                yield number, line.rstrip("\n").rstrip("\r")
    except (EOFError, gzip.BadGzipFile, OSError) as err:
        raise ValueError(f"{path}: unreadable or truncated file ({err}); obtain it again from {SOURCE}") from err


def _scores(text: str, where: str) -> list[float]:
    parts = text.split()
    if len(parts) != len(ASPECTS):
        raise ValueError(f"{where}: expected {len(ASPECTS)} scores before the tab, got {len(parts)}: {text[:60]!r}")
    try:
        scores = [float(s) for s in parts]
    except ValueError:
        raise ValueError(f"{where}: scores must be numbers, got {text[:60]!r}") from None
    if not all(0.0 <= s <= 1.0 for s in scores):
        raise ValueError(f"{where}: scores must lie in [0, 1], got {scores}")
    return scores


def read_reviews(path: str | Path) -> list[Review]:
    """Read a ``s0 s1 s2 s3 s4<TAB>text`` file (plain or gzipped). Blank lines are skipped.

    Raises:
        ValueError: a malformed line, naming ``path:line``.
    """
    path = Path(path)
    out = []
    for number, line in _lines(path):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        if "\t" not in line:
            raise ValueError(f"{where}: expected 's0 s1 s2 s3 s4<TAB>text', found no tab: {line[:60]!r}")
        head, text = line.split("\t", 1)
        tokens = text.split()
        if not tokens:
            raise ValueError(f"{where}: the review text is empty")
        out.append(Review(tokens=tokens, scores=_scores(head, where), source=path.name))
    return out


def read_annotations(path: str | Path) -> list[Review]:
    """Read Lei et al.'s ``annotations.json`` (JSON lines with ``x``, ``y`` and spans ``"0"``..``"4"``).

    Raises:
        ValueError: a line that is not JSON, lacks ``x``/``y``, or has a span outside ``[0, len(x)]``,
            naming ``path:line``.
    """
    path = Path(path)
    out = []
    for number, line in _lines(path):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from None
        if not isinstance(item, dict) or "x" not in item or "y" not in item:
            raise ValueError(f"{where}: expected a JSON object with keys 'x' (tokens) and 'y' (5 scores)")
        tokens = item["x"]
        if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
            raise ValueError(f"{where}: 'x' must be a non-empty list of token strings")
        y = item["y"]
        if not isinstance(y, list):
            raise ValueError(f"{where}: 'y' must be a list of {len(ASPECTS)} scores")
        scores = _scores(" ".join(str(v) for v in y), where)
        spans: dict[int, list[tuple[int, int]]] = {}
        for aspect in range(len(ASPECTS)):
            raw = item.get(str(aspect), [])
            try:
                pairs = [(int(a), int(b)) for a, b in raw]
            except (TypeError, ValueError):
                raise ValueError(f"{where}: spans '{aspect}' must be a list of [start, end) pairs") from None
            for a, b in pairs:
                if not 0 <= a <= b <= len(tokens):
                    raise ValueError(f"{where}: span [{a}, {b}) of aspect {aspect} lies outside [0, {len(tokens)}]")
            spans[aspect] = pairs
        out.append(Review(tokens=tokens, scores=scores, spans=spans, source=path.name))
    return out


def read_word2vec(path: str | Path, max_words: int | None = None) -> tuple[list[str], np.ndarray]:
    """Read word vectors in word2vec text format (optional ``count dim`` header; plain or gzipped).

    Returns:
        words (V,) and float32 vectors (V, d); a repeated word keeps its first vector.

    Raises:
        ValueError: a line with the wrong number of values or a non-number, naming ``path:line``.
    """
    path = Path(path)
    words: list[str] = []
    rows: list[np.ndarray] = []
    seen: set[str] = set()
    dim = None
    for number, line in _lines(path):
        parts = line.rstrip().split(" ")
        if not line.strip():
            continue
        where = f"{path}:{number}"
        if number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
            dim = int(parts[1])
            continue
        if dim is None:
            dim = len(parts) - 1
            if dim < 1:
                raise ValueError(f"{where}: expected 'word v1 ... vd', got {line[:60]!r}")
        if len(parts) != dim + 1:
            raise ValueError(f"{where}: expected a word and {dim} values, got {len(parts) - 1} values")
        try:
            vec = np.asarray(parts[1:], dtype=np.float32)
        except ValueError:
            raise ValueError(f"{where}: vector values must be numbers: {line[:60]!r}") from None
        if not np.isfinite(vec).all():
            raise ValueError(f"{where}: vector values must be finite")
        if parts[0] in seen:
            continue
        seen.add(parts[0])
        words.append(parts[0])
        rows.append(vec)
        if max_words is not None and len(words) >= max_words:
            break
    if not words:
        raise ValueError(f"{path}: no word vectors found")
    return words, np.stack(rows)


def write_word2vec(path: str | Path, words: Sequence[str], vectors: np.ndarray) -> Path:
    """Write word2vec text format with a ``count dim`` header, atomically (tmp file then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(f"{len(words)} {vectors.shape[1]}\n")
        for word, vec in zip(words, vectors):
            fh.write(word + " " + " ".join(f"{v:.6g}" for v in vec.tolist()) + "\n")
    os.replace(tmp, path)
    return path


def deduplicate(reviews: Iterable[Review]) -> list[Review]:
    """Keep the first review of each distinct token sequence (the heldout files overlap)."""
    seen: set[tuple[str, ...]] = set()
    out = []
    for r in reviews:
        key = tuple(r.tokens)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def split_indices(n: int, valid_fraction: float, seed: int,
                  test_fraction: float = 0.0) -> tuple[list[int], list[int], list[int]]:
    """Seeded split of range(n) by ``torch.randperm(n, generator=torch.Generator().manual_seed(seed))``: its
    first ``round(valid_fraction * n)`` indices are validation, the next ``round(test_fraction * n)`` a held-out
    test set, the rest training (each sorted)."""
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"data.valid_fraction must lie in (0, 1), got {valid_fraction}")
    if not 0.0 <= test_fraction < 1.0 - valid_fraction:
        raise ValueError(f"data.heldout_test_fraction must lie in [0, 1 - valid_fraction), got {test_fraction}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed))).tolist()
    n_valid = max(1, round(valid_fraction * n)) if valid_fraction > 0 else 0
    n_test = round(test_fraction * n)
    return sorted(perm[n_valid + n_test:]), sorted(perm[:n_valid]), sorted(perm[n_valid:n_valid + n_test])


def subsample(indices: Sequence[int], fraction: float, seed: int) -> list[int]:
    """A seeded random share ``round(fraction * len(indices))`` of ``indices`` (sorted); all of them at 1.0.

    Used on the training split only, after the split, so that a smaller training set leaves the validation and test
    sets (and the embeddings, trained on all the training files' text) as they are."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"data.train_fraction must lie in (0, 1], got {fraction}")
    if fraction == 1.0:
        return list(indices)
    keep = max(1, round(fraction * len(indices)))
    perm = torch.randperm(len(indices), generator=torch.Generator().manual_seed(int(seed) + 1)).tolist()
    return sorted(indices[i] for i in perm[:keep])


def encode(token_lists: Sequence[Sequence[str]], index: dict[str, int],
           max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids, truncated/padded to ``max_len`` with PAD_ID; unknown words map to UNK_ID.

    Returns:
        ids (N, max_len) int64 and lengths (N,) int64 (number of real tokens, at most max_len).
    """
    ids = torch.full((len(token_lists), max_len), PAD_ID, dtype=torch.long)
    lengths = torch.zeros(len(token_lists), dtype=torch.long)
    for i, tokens in enumerate(token_lists):
        row = [index.get(t, UNK_ID) for t in tokens[:max_len]]
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        lengths[i] = len(row)
    return ids, lengths


def span_mask(reviews: Sequence[Review], aspect: int, max_len: int) -> torch.Tensor:
    """(N, max_len) bool: token j of review i lies in one of its ``aspect`` spans (truncated at max_len)."""
    mask = torch.zeros(len(reviews), max_len, dtype=torch.bool)
    for i, r in enumerate(reviews):
        for a, b in r.spans.get(aspect, []):
            mask[i, a:min(b, max_len)] = True
    return mask


def vocabulary(words: Sequence[str], vectors: np.ndarray) -> tuple[list[str], torch.Tensor]:
    """Vocabulary [PAD, UNK, *words] and its embedding matrix (V + 2, d): PAD is the zero vector; UNK is the
    file's ``<unk>`` vector when it has one, else zero. So unknown words and padding carry no information."""
    dim = vectors.shape[1]
    keep = [i for i, w in enumerate(words) if w not in (PAD, UNK)]
    table = torch.zeros(len(keep) + 2, dim, dtype=torch.float32)
    table[2:] = torch.from_numpy(vectors[keep])
    if UNK in words:
        table[UNK_ID] = torch.from_numpy(vectors[words.index(UNK)])
    return [PAD, UNK, *(words[i] for i in keep)], table


# ----------------------------------------------------------------------------------------------------------
# word2vec embeddings trained on the available review text


def w2v_settings(cfg: DictConfig) -> dict:
    """gensim Word2Vec settings from ``cfg.data.w2v`` and ``cfg.data.embedding_dim``."""
    w = cfg.data.get("w2v") or {}
    return {
        "vector_size": int(cfg.data.get("embedding_dim", 200)),
        "window": int(w.get("window", 5)),
        "min_count": int(w.get("min_count", 2)),
        "sg": int(w.get("sg", 1)),
        "negative": int(w.get("negative", 5)),
        "epochs": int(w.get("epochs", 20)),
        "workers": int(w.get("workers", 1)),
        "seed": int(w.get("seed", 0)),
    }


def train_word2vec(texts: Sequence[Sequence[str]], path: str | Path, settings: dict, progress: bool = True) -> Path:
    """Train gensim word2vec on ``texts`` and write it to ``path`` (word2vec text format, atomically).

    With ``workers == 1`` the file is bit-reproducible: gensim's initial vectors come from a generator seeded by
    ``seed``, and one worker processes the jobs in order, whatever ``PYTHONHASHSEED`` is. With more workers the
    order of the updates depends on thread scheduling and each build differs. Either way the file's sha256 is
    recorded in each run's metrics.json, and trained checkpoints carry their own copy of the (frozen) matrix.
    """
    import logging

    from gensim.models import Word2Vec
    from gensim.models.callbacks import CallbackAny2Vec
    from tqdm.auto import tqdm

    logging.getLogger("gensim").setLevel(logging.WARNING)  # the progress bar says enough
    bar = tqdm(total=settings["epochs"], desc="word2vec epochs", disable=not progress)

    class _Progress(CallbackAny2Vec):
        def on_epoch_end(self, model):
            bar.update(1)

    model = Word2Vec(sentences=[list(t) for t in texts], callbacks=[_Progress()], **settings)
    bar.close()
    kv = model.wv
    return write_word2vec(path, list(kv.index_to_key), np.asarray(kv.vectors, dtype=np.float32))


# ----------------------------------------------------------------------------------------------------------
# the task's data


@dataclass
class Split:
    """Encoded reviews of one split: ids (N, L) int64, lengths (N,), target (N,) float32 of the aspect's
    score and, for annotated reviews, ``rationale`` (N, L) bool (token inside the aspect's spans)."""

    ids: torch.Tensor
    lengths: torch.Tensor
    target: torch.Tensor
    reviews: list[Review]
    rationale: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.ids.shape[0]


@dataclass
class BeerData:
    train: Split
    valid: Split
    test: Split
    words: list[str]
    embeddings: torch.Tensor
    embeddings_path: Path
    info: dict
    heldout: Split | None = None  # held-out test share of the training files (same distribution as train)


def _path(root: Path, name: str) -> Path:
    """A user-given file: absolute, else under the data root when it exists there, else as given."""
    p = Path(str(name)).expanduser()
    if p.is_absolute() or not (root / p).exists():
        return p
    return root / p


def resolve_files(cfg: DictConfig) -> tuple[list[Path], list[Path] | None, Path]:
    """(train files, valid files or None for a split, test file), checksummed when they are the defaults.

    User-given paths are relative to ``<data root>`` (or absolute) and are not checksummed.
    """
    root = resolve_data_root(cfg)
    beer = root / "beer"
    d = cfg.data
    if d.get("train_files"):
        train = [require_file(_path(root, f), source=SOURCE) for f in d.train_files]
    else:
        train = [require_file(beer / f, sha, SOURCE) for f, sha in HELDOUT_FILES.items()]
    valid = [require_file(_path(root, f), source=SOURCE) for f in d.valid_files] if d.get("valid_files") else None
    if d.get("test_file"):
        test = require_file(_path(root, d.test_file), source=SOURCE)
    else:
        test = require_file(beer / ANNOTATIONS_FILE[0], ANNOTATIONS_FILE[1], SOURCE)
    return train, valid, test


def word2vec_files(cfg: DictConfig, train_files: Sequence[Path]) -> list[Path]:
    """The files whose review text trains the word2vec embeddings: ``data.w2v_files``, else the training files.

    Set it to train on a subset of the files with the default embeddings, e.g. the aspect-1 file only with
    the word vectors of all four files."""
    files = cfg.data.get("w2v_files")
    if not files:
        return list(train_files)
    root = resolve_data_root(cfg)
    return [require_file(_path(root, f), source=SOURCE) for f in files]


def default_embeddings_path(cfg: DictConfig, train_files: Sequence[Path]) -> Path:
    """Cache file for word2vec trained on ``train_files`` with ``w2v_settings(cfg)``."""
    settings = w2v_settings(cfg)
    key = json.dumps(
        {"files": [(p.name, p.stat().st_size) for p in train_files], "limit": cfg.data.get("limit_train"),
         "w2v": {k: v for k, v in settings.items() if k != "workers"},
         # a build with one worker is reproducible and one with several is not: they are kept apart
         "reproducible": settings["workers"] == 1},
        sort_keys=True,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return cache_dir(cfg) / f"beer_word2vec_{settings['vector_size']}d_{digest}.txt"


def load_training_reviews(cfg: DictConfig, train_files: Sequence[Path]) -> list[Review]:
    """The training files' reviews, deduplicated by text, cut to ``data.limit_train`` when set."""
    reviews = deduplicate(r for f in train_files for r in read_reviews(f))
    limit = cfg.data.get("limit_train")
    return reviews[: int(limit)] if limit else reviews


# gensim skip-gram with one worker on one core of the 2-core AMD EPYC the project runs on: the default build
# (5.96M tokens x 20 epochs) took 13 min 51 s (issue 41), about 143k words a second; reading and deduplicating
# the four files takes seconds of it, so the build's time is gensim's training loop.
W2V_WORDS_PER_S = 143_000


def w2v_notice(reviews: Sequence[Review], settings: dict, path: Path) -> str:
    """What the one-time word2vec build does and about how long it takes (printed before it starts)."""
    tokens = sum(len(r.tokens) for r in reviews)
    minutes = tokens * settings["epochs"] / W2V_WORDS_PER_S / 60 / max(1, settings["workers"])
    return (f"[l2x] word2vec: training {settings['vector_size']}-d embeddings on {len(reviews):,} reviews "
            f"({tokens / 1e6:.2f}M tokens, {settings['epochs']} epochs, {settings['workers']} worker thread(s)). "
            f"This runs ONCE and takes about {max(1, round(minutes))} minutes on one CPU core; every later L2X run "
            f"reuses {path} (or run `python scripts/prepare_beer.py` beforehand).")


def ensure_embeddings(cfg: DictConfig, train_files: Sequence[Path], reviews: Sequence[Review] | None = None,
                      progress: bool = True) -> Path:
    """``data.embeddings`` when given (must exist), else the cached word2vec file, trained when missing."""
    if cfg.data.get("embeddings"):
        return require_file(_path(resolve_data_root(cfg), cfg.data.embeddings),
                            source="a word2vec text file (e.g. Lei et al.'s review+wiki.filtered.200.txt.gz)")
    path = default_embeddings_path(cfg, train_files)
    if not path.is_file():
        if reviews is None:
            reviews = load_training_reviews(cfg, train_files)
        print(w2v_notice(reviews, w2v_settings(cfg), path), flush=True)
        train_word2vec([r.tokens for r in reviews], path, w2v_settings(cfg), progress=progress)
    return path


def load_beer(cfg: DictConfig, progress: bool = True) -> BeerData:
    """Read, split and encode the data for aspect ``cfg.aspect`` (see the module docstring)."""
    aspect = int(cfg.aspect)
    if not 0 <= aspect < len(ASPECTS):
        raise ValueError(f"aspect must be in 0..{len(ASPECTS) - 1} ({', '.join(ASPECTS)}), got {aspect}")
    max_len = int(cfg.data.max_len)
    train_files, valid_files, test_file = resolve_files(cfg)
    reviews = load_training_reviews(cfg, train_files)
    vf, tf, seed = float(cfg.data.valid_fraction), float(cfg.data.get("heldout_test_fraction") or 0.0), \
        int(cfg.data.split_seed)
    if valid_files:  # validate on the given files; a held-out test share may still come from the training files
        tr, _, te = split_indices(len(reviews), 0.0, seed, tf)
        valid_reviews = deduplicate(r for f in valid_files for r in read_reviews(f))
    else:
        if vf <= 0:
            raise ValueError("data.valid_fraction must be > 0 unless data.valid_files is given")
        tr, va, te = split_indices(len(reviews), vf, seed, tf)
        valid_reviews = [reviews[i] for i in va]
    tr = subsample(tr, float(cfg.data.get("train_fraction", 1.0)), seed)
    train_reviews, heldout_reviews = [reviews[i] for i in tr], [reviews[i] for i in te]
    test_reviews = read_annotations(test_file)
    w2v_files = word2vec_files(cfg, train_files)
    emb_path = ensure_embeddings(cfg, w2v_files, reviews if w2v_files == list(train_files) else None,
                                 progress=progress)
    file_words, vectors = read_word2vec(emb_path)
    words, table = vocabulary(file_words, vectors)
    index = {w: i for i, w in enumerate(words)}

    def split(rs: list[Review], with_spans: bool) -> Split:
        ids, lengths = encode([r.tokens for r in rs], index, max_len)
        target = torch.tensor([r.scores[aspect] for r in rs], dtype=torch.float32)
        rationale = span_mask(rs, aspect, max_len) if with_spans else None
        return Split(ids, lengths, target, rs, rationale)

    train, valid, test = split(train_reviews, False), split(valid_reviews, False), split(test_reviews, True)
    heldout = split(heldout_reviews, False) if heldout_reviews else None
    real = train.ids[train.ids != PAD_ID]
    info = {
        "train_files": [str(p) for p in train_files],
        "w2v_files": [str(p) for p in w2v_files],
        "valid_files": [str(p) for p in valid_files] if valid_files else None,
        "test_file": str(test_file),
        "num_train": len(train), "num_valid": len(valid), "num_test": len(test),
        "num_heldout_test": len(heldout) if heldout is not None else 0,
        "num_heldout_test_aspect_file": sum(f"aspect{aspect}." in r.source for r in heldout_reviews),
        "split_seed": seed, "valid_fraction": vf, "heldout_test_fraction": tf,
        "train_fraction": float(cfg.data.get("train_fraction", 1.0)),
        "embeddings": str(emb_path), "embeddings_sha256": sha256sum(emb_path),
        "vocab_size": len(words), "embedding_dim": int(table.shape[1]),
        "train_unk_rate": round(float((real == UNK_ID).float().mean()), 4) if real.numel() else 0.0,
        "test_reviews_with_spans": int(sum(bool(r.spans.get(aspect)) for r in test_reviews)),
    }
    return BeerData(train, valid, test, words, table, emb_path, info, heldout)
