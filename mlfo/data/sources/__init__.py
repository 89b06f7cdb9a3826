"""Dataset sources: which videos exist, their labels, and what is in each file.

``load_index(source, fmt=...)`` -> ``VideoIndex`` of ``VideoRecord`` (path, frames, fps,
size, label, status). One module per concept: ``records`` (the data types), ``formats``
(one module per dataset format), ``probe`` (opening files), ``cache`` (the index CSV
beside the source), ``index`` (putting them together).
"""

from mlfo.data.sources.cache import CACHE_SUFFIX, default_cache_path
from mlfo.data.sources.formats import FORMATS, detect_format
from mlfo.data.sources.index import SUBSETS, load_index, summarize
from mlfo.data.sources.probe import probe_video
from mlfo.data.sources.records import VIDEO_SUFFIXES, VideoIndex, VideoRecord

__all__ = ["CACHE_SUFFIX", "FORMATS", "SUBSETS", "VIDEO_SUFFIXES", "VideoIndex", "VideoRecord",
           "default_cache_path", "detect_format", "load_index", "probe_video", "summarize"]
