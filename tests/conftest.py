"""Test-wide settings.

One thread per process: on 2 shared cores a busy neighbour makes multi-threaded steps up
to 13x slower, and the suite must stay well under 10 minutes.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
