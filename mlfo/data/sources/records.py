"""What an index says about each video: ``VideoRecord``, and the ``VideoIndex`` of a source."""

from __future__ import annotations

from dataclasses import dataclass, field

VIDEO_SUFFIXES = (
    ".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".ogv", ".flv", ".wmv", ".3gp",
)


@dataclass
class VideoRecord:
    path: str
    num_frames: int
    fps: float
    width: int
    height: int
    label: int = -1
    label_name: str = ""
    status: str = "ok"  # "ok", "missing", "empty" or "unreadable: <reason>"
    # Degrees clockwise a player turns the picture (a phone's display matrix); frames are
    # read as stored, in every backend, and ``mlfo data scan`` lists the files that declare one.
    rotation: int = 0


@dataclass
class VideoIndex:
    records: list[VideoRecord]
    classes: list[str]
    source: str
    skipped: list[str] = field(default_factory=list)  # "file:line: problem" for dropped rows
    cache_path: str | None = None  # where the probe results were written, if anywhere

    def usable(self, min_frames: int = 0) -> list[VideoRecord]:
        """Records that decode and have more than ``min_frames`` frames."""
        return [r for r in self.records if r.status == "ok" and r.num_frames > min_frames]

    def problems(self, min_frames: int = 0) -> list[tuple[str, str]]:
        """(path, reason) of every record ``usable(min_frames)`` leaves out."""
        found = [(r.path, r.status) for r in self.records if r.status != "ok"]
        return found + [(r.path, f"too short: {r.num_frames} frames <= {min_frames}")
                        for r in self.records if r.status == "ok" and r.num_frames <= min_frames]
