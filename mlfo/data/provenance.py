"""Which videos an encoder was pretrained on, kept as digests of their names.

A pretraining checkpoint stores the sorted 64-bit digests (the first 8 bytes of sha1) of
its training videos' names; an exported encoder carries them in its header, feature
extraction and fine-tuning compare them with the videos they score. A test video that
the encoder saw while pretraining (UCF101 ``--split all`` with an encoder pretrained on
split-1 train: splits 2 and 3 test on such videos) is counted, printed and recorded.

The name is the file name without a video suffix (``v_ApplyEyeMakeup_g01_c01`` for the
.avi and for a folder of its frames), not the path: evaluation often reads the same
videos through another root or CSV than pretraining did. Two different videos of one
name count as seen, so the count is an upper bound, never an undercount.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from pathlib import PurePath

import numpy as np

from mlfo.data.sources.records import VIDEO_SUFFIXES

DIGEST = "sha1(file name without video suffix)[:8] as int64"


def video_name(path: str) -> str:
    p = PurePath(str(path).rstrip("/\\"))
    return p.stem if p.suffix.lower() in VIDEO_SUFFIXES else p.name


def name_digests(paths: Iterable[str]) -> np.ndarray:
    """(N,) int64, sorted and unique: the digests of the videos' names."""
    values = [int.from_bytes(hashlib.sha1(video_name(p).encode()).digest()[:8], "little", signed=True)
              for p in paths]
    return np.unique(np.asarray(values, dtype=np.int64))


def seen_in(digests: np.ndarray | None, paths: list[str]) -> list[int]:
    """Indices of ``paths`` whose names are among ``digests``."""
    if digests is None or len(digests) == 0 or not paths:
        return []
    mine = np.array([name_digests([p])[0] for p in paths], dtype=np.int64)
    return np.flatnonzero(np.isin(mine, np.asarray(digests, dtype=np.int64))).tolist()


def to_text(digests: np.ndarray) -> str:
    """base64 of the little-endian int64 digests (a safetensors header holds only strings)."""
    return base64.b64encode(np.asarray(digests, dtype="<i8").tobytes()).decode("ascii")


def from_text(text: str) -> np.ndarray:
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    if len(raw) % 8:
        raise ValueError("not a whole number of 8-byte digests")
    return np.frombuffer(raw, dtype="<i8").astype(np.int64)


def overlap_summary(digests: np.ndarray | None, paths: list[str], shown: int = 5) -> dict | None:
    """``{"videos", "of", "examples", "digest"}`` for the scored videos the encoder was
    pretrained on; None when the encoder records no pretraining videos."""
    if digests is None:
        return None
    hits = seen_in(digests, paths)
    return {"videos": len(hits), "of": len(paths), "examples": [paths[i] for i in hits[:shown]], "digest": DIGEST}
