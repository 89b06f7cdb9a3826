"""``python frame_exact.py VIDEO``: is random access to VIDEO frame-exact? Prints one JSON line.

Run in a child process by the conformance test, so that a decoder crash is a failed file,
not a dead test run. The truth is a plain sequential PyAV decode (each frame's RGB hashed);
the reader is asked, on fresh readers and on one reader in a shuffled order, for the first
and last frames, every keyframe, the frame after it and the frame before it, and random
frames (in files with many keyframes, a subset of them is read on fresh readers). A file ``mlfo data scan`` refuses (status not "ok") is reported as refused with its
one-line reason instead.
"""

from __future__ import annotations

import hashlib
import json
import random
import resource
import sys

import av


def _hash(array) -> str:
    return hashlib.blake2b(array.tobytes(), digest_size=16).hexdigest()


def sequential(path: str, keep: set[int] | None = None) -> tuple[int, dict[int, str]]:
    """(frame count, {index: hash}) of a start-to-end decode; ``keep``: hash only those frames."""
    hashes = {}
    count = 0
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.codec_context.flags |= av.codec.context.Flags.unaligned  # the picture the header names
        # A zero-length packet with a timestamp (Theora's "picture unchanged") is no
        # picture; sent to the decoder it would start the end-of-stream drain.
        packets = (p for p in container.demux(stream) if p.size or p.pts is None)
        frames = (frame for packet in packets for frame in packet.decode())
        for count, frame in enumerate(frames, start=1):
            if keep is None or count - 1 in keep:
                hashes[count - 1] = _hash(frame.to_ndarray(format="rgb24"))
    return count, hashes


def wanted_indices(n: int, keyframes: list[int], seed: str) -> list[int]:
    rng = random.Random(seed)
    around = {k + d for k in keyframes for d in (-1, 0, 1)}
    picked = {0, n - 1, n // 2} | around | {rng.randrange(n) for _ in range(16)}
    return sorted(i for i in picked if 0 <= i < n)


def check(path: str) -> dict:
    from mlfo.data.readers import open_video
    from mlfo.data.sources import probe_video

    meta = probe_video(path)
    if meta["status"] != "ok":
        return {"result": "refused", "status": meta["status"]}
    with open_video(path) as reader:
        n, keyframes = reader.num_frames, reader.keyframes
    indices = wanted_indices(n, keyframes, path)
    count, truth = sequential(path, set(indices))
    if count != n or meta["num_frames"] != n:
        return {"result": "wrong count", "reader": n, "scan": meta["num_frames"], "sequential": count}
    wrong = []
    rng = random.Random(path)
    fresh = [0, n - 1] + rng.sample(keyframes[1:], min(3, len(keyframes) - 1))
    for i in fresh:  # each on a new reader: the first read seeks straight to its keyframe
        with open_video(path) as reader:
            if _hash(reader.get_frames([i])[0].numpy()) != truth[i]:
                wrong.append(i)
    shuffled = indices[:]
    rng.shuffle(shuffled)
    with open_video(path) as reader:
        for start in range(0, len(shuffled), 4):  # small batches, in a shuffled order
            batch = shuffled[start:start + 4]
            for i, frame in zip(batch, reader.get_frames(batch)):
                if _hash(frame.numpy()) != truth[i]:
                    wrong.append(i)
    return {"result": "exact" if not wrong else "wrong frames", "frames": n, "keyframes": len(keyframes),
            "checked": len(indices), "wrong": sorted(set(wrong))[:20]}


if __name__ == "__main__":
    result = check(sys.argv[1])
    result["cpu_s"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_utime, 2)
    print(json.dumps(result))
