"""Where data lives, checked file access, and in-memory mini-batches."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import Tensor

REPO_ROOT = Path(__file__).resolve().parents[2]


def resolve_data_root(cfg: DictConfig | None = None) -> Path:
    """``cfg.data.root``, else ``$SST_DATA_DIR``, else ``<repo>/../shared/data`` when present, else ``<repo>/data``."""
    root = None
    if cfg is not None and "data" in cfg and cfg.data.get("root"):
        root = Path(str(cfg.data.root)).expanduser()
        if not root.is_absolute():
            root = REPO_ROOT / root
        return root
    if os.environ.get("SST_DATA_DIR"):
        return Path(os.environ["SST_DATA_DIR"]).expanduser()
    shared = REPO_ROOT.parent / "shared" / "data"
    if shared.is_dir():
        return shared
    return REPO_ROOT / "data"


def cache_dir(cfg: DictConfig | None = None) -> Path:
    """Folder for generated or prepared data: ``$SST_CACHE_DIR``, else ``<repo>/data/cache`` (git-ignored)."""
    path = Path(os.environ.get("SST_CACHE_DIR") or REPO_ROOT / "data" / "cache").expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256sum(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def require_file(path: str | Path, sha256: str | None = None, source: str = "") -> Path:
    """Return ``path`` if it exists (and matches ``sha256`` when given), else raise a clear error.

    Raises:
        FileNotFoundError: the file is missing; the message names it, its checksum and where to get it.
        ValueError: the file's checksum differs (corrupt or a different version).
    """
    path = Path(path)
    where = f" Obtain it from {source}." if source else ""
    expect = f" (expected sha256 {sha256})" if sha256 else ""
    if not path.is_file():
        raise FileNotFoundError(
            f"missing data file {path}{expect}.{where} Set data.root or $SST_DATA_DIR to the folder holding it."
        )
    if sha256 is not None:
        got = sha256sum(path)
        if got != sha256:
            raise ValueError(f"corrupt data file {path}: sha256 {got}, expected {sha256}.{where}")
    return path


class TensorBatches:
    """Endless shuffled mini-batches of same-length tensors, index draws on the tensors' device.

    Args:
        tensors: tensors of shape (N, ...), all on one device.
        batch_size: items per batch (the last partial batch of an epoch is dropped).
        generator: a torch.Generator on the tensors' device, for reproducible shuffles.
        lengths: optional (N,) integer sizes (e.g. tokens per review) for length bucketing: each epoch's
            random order is cut into buckets of ``bucket_batches * batch_size`` items, each bucket is sorted by
            length and cut into batches, and the epoch's batches are shuffled. Every item still appears once
            per epoch; a batch holds items of similar length, so padding to the batch's longest item wastes
            little compute (variable-length text).
        bucket_batches: batches per bucket (with ``lengths``).

    Yields:
        tuples of tensors of shape (batch_size, ...).
    """

    def __init__(self, tensors: Sequence[Tensor], batch_size: int, generator: torch.Generator | None = None,
                 lengths: Tensor | None = None, bucket_batches: int = 50):
        if not tensors:
            raise ValueError("tensors must hold at least one tensor")
        n = tensors[0].shape[0]
        if any(t.shape[0] != n for t in tensors):
            raise ValueError("tensors must share their first dimension")
        if not 0 < batch_size <= n:
            raise ValueError(f"batch_size must be in [1, {n}], got {batch_size}")
        if lengths is not None and tuple(lengths.shape) != (n,):
            raise ValueError(f"lengths must have shape ({n},), got {tuple(lengths.shape)}")
        if bucket_batches < 1:
            raise ValueError(f"bucket_batches must be >= 1, got {bucket_batches}")
        self.tensors = tuple(tensors)
        self.batch_size = batch_size
        self.generator = generator
        self.lengths = None if lengths is None else lengths.to(self.tensors[0].device, torch.long)
        self._span = int(self.lengths.max()) + 1 if self.lengths is not None else 1  # sort key: bucket, length
        self.bucket_batches = int(bucket_batches)
        self.epoch = 0

    def __len__(self) -> int:
        return self.tensors[0].shape[0] // self.batch_size

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        device = self.tensors[0].device
        n = self.tensors[0].shape[0]
        while True:
            gen = self.generator if self.generator is not None and self.generator.device == device else None
            perm = torch.randperm(n, device=device, generator=gen)
            if self.lengths is not None:
                perm = self._bucketed(perm, gen)
            for i in range(len(self)):
                idx = perm[i * self.batch_size : (i + 1) * self.batch_size]
                yield tuple(t[idx] for t in self.tensors)
            self.epoch += 1

    def _bucketed(self, perm: Tensor, gen: torch.Generator | None) -> Tensor:
        """Sort ``perm`` by length within buckets, then shuffle whole batches (all on the device)."""
        nb, bs = len(self), self.batch_size
        perm = perm[: nb * bs]
        bucket = torch.arange(nb * bs, device=perm.device) // (self.bucket_batches * bs)
        perm = perm[torch.argsort(bucket * self._span + self.lengths[perm], stable=True)]
        order = torch.randperm(nb, device=perm.device, generator=gen)
        return perm.view(nb, bs)[order].reshape(-1)
