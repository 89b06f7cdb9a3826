"""Which videos an encoder was pretrained on, kept as 64-bit digests of their identities.

A pretraining checkpoint stores the sorted digests of its training videos; an exported
encoder carries them in its header; feature extraction and fine-tuning compare them with
the videos they score. A test video that the encoder saw while pretraining (UCF101
``--split all`` with an encoder pretrained on split-1 train: splits 2 and 3 test on such
videos) is counted, printed and recorded.

A video's identity is its name (the file name without a video suffix, so the same videos
read through another root or CSV still match), its size in bytes (for a folder of frames:
the bytes of its first and last files) and its frame count. A name alone is not enough: a dataset laid
out as ``train/<class>/clip_000.mp4`` and ``test/<class>/clip_000.mp4`` holds different
clips of one name. A copy of a video matches; a re-encoded one does not.

Sets written by earlier mlfo versions (checkpoints and encoders) hold name digests
only. They are still compared, by name, and the summary says so: the count is then an
upper bound. An identity set carries ``IDENTITY_MARKER``, the digest of a fixed text,
so the two kinds are told apart wherever the set travels (checkpoint, encoder header,
resume) without a second field.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import PurePath

import numpy as np

from mlfo.data.sources.records import VIDEO_SUFFIXES, VideoRecord

DIGEST = "sha1(name without video suffix, size in bytes, frame count)[:8] as int64"
NAME_DIGEST = "sha1(file name without video suffix)[:8] as int64"
MATCHED = "name, size and frame count"
MATCHED_BY_NAME = ("file name only (the encoder records names, not sizes and frame counts: "
                   "different videos of one name count as seen)")


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.sha1(text.encode("utf-8", "surrogateescape")).digest()[:8], "little", signed=True)


IDENTITY_MARKER = _digest("mlfo provenance: video identities (name, size, frame count)")


def video_name(path: str) -> str:
    p = PurePath(str(path).rstrip("/\\"))
    return p.stem if p.suffix.lower() in VIDEO_SUFFIXES else p.name


def _size(path: str) -> int:
    """Bytes of the file, or of the first and last files of a frame folder (two stats, not
    one per frame); -1 when it cannot be read."""
    try:
        if os.path.isdir(path):
            names = sorted(e.name for e in os.scandir(path) if e.is_file())
            return sum(os.stat(os.path.join(path, n)).st_size for n in names[:1] + names[-1:])
        return os.stat(path).st_size
    except OSError:
        return -1


def video_identity(record: VideoRecord) -> int:
    """The int64 digest of (name, size, frame count) of one video."""
    return _digest(f"{video_name(record.path)}\0{_size(record.path)}\0{int(record.num_frames)}")


def video_digests(records: Iterable[VideoRecord]) -> np.ndarray:
    """(N + 1,) int64, sorted and unique: the videos' identities and ``IDENTITY_MARKER``."""
    values = [video_identity(r) for r in records] + [IDENTITY_MARKER]
    return np.unique(np.asarray(values, dtype=np.int64))


def name_digests(paths: Iterable[str]) -> np.ndarray:
    """(N,) int64, sorted and unique: digests of the videos' names (the older, name-only sets)."""
    values = [_digest(video_name(p)) for p in paths]
    return np.unique(np.asarray(values, dtype=np.int64))


def by_identity(digests: np.ndarray) -> bool:
    """Whether a set holds identities (True) or names only (a set written before them)."""
    return bool(np.isin(IDENTITY_MARKER, np.asarray(digests, dtype=np.int64)))


def seen_in(digests: np.ndarray | None, records: Sequence[VideoRecord]) -> list[int]:
    """Indices of ``records`` among ``digests``, matched the way the set was written."""
    if digests is None or len(digests) == 0 or not records:
        return []
    if by_identity(digests):
        mine = np.array([video_identity(r) for r in records], dtype=np.int64)
    else:
        mine = np.array([_digest(video_name(r.path)) for r in records], dtype=np.int64)
    return np.flatnonzero(np.isin(mine, np.asarray(digests, dtype=np.int64))).tolist()


def to_text(digests: np.ndarray) -> str:
    """base64 of the little-endian int64 digests (a safetensors header holds only strings)."""
    return base64.b64encode(np.asarray(digests, dtype="<i8").tobytes()).decode("ascii")


def from_text(text: str) -> np.ndarray:
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    if len(raw) % 8:
        raise ValueError("not a whole number of 8-byte digests")
    return np.frombuffer(raw, dtype="<i8").astype(np.int64)


def overlap_summary(digests: np.ndarray | None, records: Sequence[VideoRecord], shown: int = 5) -> dict | None:
    """``{"videos", "of", "examples", "digest", "matched"}`` for the scored videos the
    encoder was pretrained on; None when the encoder records no pretraining videos."""
    if digests is None:
        return None
    hits = seen_in(digests, records)
    identity = by_identity(digests)
    return {"videos": len(hits), "of": len(records), "examples": [records[i].path for i in hits[:shown]],
            "digest": DIGEST if identity else NAME_DIGEST, "matched": MATCHED if identity else MATCHED_BY_NAME}


def matched_phrase(overlap: dict) -> str:
    """How a recorded overlap was matched, for a console line (older records: by name)."""
    return overlap.get("matched") or "file name"
