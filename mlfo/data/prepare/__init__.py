"""``mlfo data prepare SRC DST``: a training copy of a dataset that decodes several times
faster per core (smaller frames, short GOPs, a fast codec), with the same videos, frames,
labels and splits. ``layout`` (what the copy holds), ``encode`` (one video), ``verify``
(checking it), ``job`` (one video in a worker), ``destination`` (where it may be written),
``run`` (all of them, resumable and sharded)."""

from mlfo.data.prepare.encode import Encoding
from mlfo.data.prepare.run import DEFAULT_SHORT_SIDE, Report, combine, prepare

__all__ = ["DEFAULT_SHORT_SIDE", "Encoding", "Report", "combine", "prepare"]
