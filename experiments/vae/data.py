"""MNIST from the standard idx files, checked by checksum, binarised for the discrete VAE.

No torchvision: the idx format is read directly (gzip-compressed or raw). Files are looked for under
``<data root>/mnist/MNIST/raw`` (torchvision's layout; also ``<root>/MNIST/raw``, ``<root>/mnist`` and
``<root>``). A missing file is downloaded once from the public mirrors when ``data.download`` is true and
verified by MD5 before it is used; a file that is present is verified by SHA-256 on every load.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from experiments.common.data import require_file

MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)


@dataclass(frozen=True)
class IdxFile:
    """One MNIST file: checksums of the .gz (sha256 and the md5 torchvision publishes) and of the raw idx."""

    name: str  # without .gz
    gz_sha256: str
    gz_md5: str
    raw_sha256: str


FILES = {
    "train_images": IdxFile(
        "train-images-idx3-ubyte",
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ),
    "train_labels": IdxFile(
        "train-labels-idx1-ubyte",
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "d53e105ee54ea40749a09fcbcd1e9432",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    ),
    "test_images": IdxFile(
        "t10k-images-idx3-ubyte",
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "9fb629c4189551a2d022fa330f9573f3",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ),
    "test_labels": IdxFile(
        "t10k-labels-idx1-ubyte",
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        "ec29112dd5afa0611ce80d1b7f02629c",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
}

# idx type codes -> big-endian numpy dtypes
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"


class CorruptDataError(ValueError):
    """A data file that exists but cannot be what it claims to be (bad checksum, magic or size)."""


def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file (gzip-compressed or raw, detected from its first bytes) into a numpy array.

    Format: two zero bytes, a type code (0x08 uint8 ... 0x0E float64), the number of dimensions, then one
    big-endian uint32 per dimension, then the data in C order, big-endian.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CorruptDataError: bad gzip stream, bad magic, unknown type code, or a size that disagrees with the header.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing idx file {path}")
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise CorruptDataError(f"corrupt idx file {path}: not a valid gzip stream ({err})") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise CorruptDataError(
            f"corrupt idx file {path}: wrong magic number {raw[:4].hex() or '(empty)'} "
            "(expected 0000 followed by a type code and the number of dimensions)"
        )
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise CorruptDataError(f"corrupt idx file {path}: unknown type code 0x{code:02x}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise CorruptDataError(f"corrupt idx file {path}: truncated header")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise CorruptDataError(
            f"corrupt idx file {path}: header says shape {shape} ({expected} bytes of data), "
            f"file holds {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write ``array`` as an idx file (gzip when ``compress`` or when the name ends in .gz). For tests and tools."""
    path = Path(path)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_DTYPES.items()}
    array = np.ascontiguousarray(array)
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"array dtype {array.dtype} has no idx type code")
    payload = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload += array.astype(_IDX_DTYPES[code]).tobytes()
    if compress if compress is not None else path.suffix == ".gz":
        payload = gzip.compress(payload)
    path.write_bytes(payload)
    return path


def candidate_dirs(root: Path) -> list[Path]:
    """Folders searched for the MNIST files under a data root, torchvision's layout first."""
    root = Path(root)
    return [root / "mnist" / "MNIST" / "raw", root / "MNIST" / "raw", root / "mnist", root]


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def download(spec: IdxFile, dest_dir: Path, mirrors: tuple[str, ...] = MIRRORS, timeout: float = 30.0) -> Path:
    """Fetch ``<spec.name>.gz`` from the first mirror that serves a file with the right MD5.

    The file is written to a temporary name and moved into place only after its MD5 matched.

    Raises:
        RuntimeError: no mirror gave a verified file; the message lists each mirror's error.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / f"{spec.name}.gz"
    errors = []
    for mirror in mirrors:
        url = mirror + target.name
        fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=target.name, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                while block := resp.read(1 << 20):
                    out.write(block)
            got = _md5(Path(tmp))
            if got != spec.gz_md5:
                errors.append(f"{url}: md5 {got}, expected {spec.gz_md5}")
                continue
            os.replace(tmp, target)
            return target
        except (urllib.error.URLError, OSError, ValueError) as err:
            errors.append(f"{url}: {err}")
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    raise RuntimeError(
        f"could not download {target.name} (md5 {spec.gz_md5}) into {dest_dir}; tried:\n  "
        + "\n  ".join(errors)
        + f"\nPlace the file there yourself (sha256 {spec.gz_sha256}) or set data.root / $SST_DATA_DIR."
    )


def locate(spec: IdxFile, root: Path, allow_download: bool = False) -> Path:
    """Path of a verified copy of ``spec`` under ``root`` (.gz preferred, else raw), downloading it if allowed.

    Raises:
        FileNotFoundError: not present and not downloadable; names the file, its sha256 and the mirrors.
        ValueError: present but its checksum is wrong.
    """
    source = "the MNIST mirrors " + ", ".join(MIRRORS) + " (torchvision layout <root>/mnist/MNIST/raw)"
    for folder in candidate_dirs(root):
        gz, raw = folder / f"{spec.name}.gz", folder / spec.name
        if gz.is_file():
            return require_file(gz, spec.gz_sha256, source)
        if raw.is_file():
            return require_file(raw, spec.raw_sha256, source)
    canonical = candidate_dirs(root)[0]
    if allow_download:
        return download(spec, canonical)
    return require_file(canonical / f"{spec.name}.gz", spec.gz_sha256, source + "; or run with data.download=true")


def load_mnist_images(root: Path, allow_download: bool = False) -> tuple[Tensor, Tensor]:
    """Train (60000, 784) and test (10000, 784) grey levels as uint8 tensors, from verified idx files."""
    out = []
    for key, n in (("train_images", 60000), ("test_images", 10000)):
        path = locate(FILES[key], root, allow_download)
        arr = read_idx(path)
        if arr.shape != (n, 28, 28) or arr.dtype != np.uint8:
            raise CorruptDataError(f"{path}: expected uint8 images of shape ({n}, 28, 28), got {arr.dtype} {arr.shape}")
        out.append(torch.from_numpy(arr.reshape(n, 784).copy()))
    return out[0], out[1]


def split_train_valid(images: Tensor, num_valid: int, seed: int) -> tuple[Tensor, Tensor]:
    """Seeded random split of the 60k training images into (train, valid); the same for every run seed."""
    if not 0 < num_valid < images.shape[0]:
        raise ValueError(f"data.num_valid must be in (0, {images.shape[0]}), got {num_valid}")
    perm = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))
    return images[perm[num_valid:]], images[perm[:num_valid]]


BINARIZE = ("dynamic", "fixed", "threshold", "grey")


def binarize(grey: Tensor, mode: str, generator: torch.Generator | None = None) -> Tensor:
    """Pixels as float tensors of the shape of ``grey``, from uint8 grey levels: binary (0/1) except for ``grey``.

    ``dynamic`` and ``fixed`` draw Bernoulli(grey / 255) (fixed: the caller draws once and keeps the result);
    ``threshold`` is grey / 255 > 0.5; ``grey`` keeps grey / 255 in [0, 1] unbinarised, the encoder's input and
    the Bernoulli cross-entropy's target (as the first notebook Jang released with the Gumbel-softmax paper does;
    the "-ELBO" is then a cross-entropy, not a bound on the likelihood of binary images).
    """
    p = grey.float() / 255.0
    if mode == "grey":
        return p
    if mode == "threshold":
        return (p > 0.5).float()
    if mode in ("dynamic", "fixed"):
        return torch.bernoulli(p, generator=generator)
    raise ValueError(f"data.binarize must be one of {', '.join(BINARIZE)}, got {mode!r}")
