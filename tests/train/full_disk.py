"""``mlfo`` CLI (argv) in this process on a disk that fills up: the second checkpoint write
of rank 0 fails with ENOSPC. Run under torchrun by the full-disk test."""

import errno
import io
import sys

import torch

from mlfo.cli import main

real_save, calls = torch.save, []


def save_on_a_full_disk(obj, fh, *args, **kwargs):
    if isinstance(fh, io.BytesIO):  # torch.distributed pickling objects, not a file
        return real_save(obj, fh, *args, **kwargs)
    calls.append(1)
    if len(calls) < 2:
        return real_save(obj, fh, *args, **kwargs)
    fh.write(b"PK\x03\x04 half a checkpoint")
    raise OSError(errno.ENOSPC, "No space left on device")


torch.save = save_on_a_full_disk
sys.exit(main(sys.argv[1:]))
