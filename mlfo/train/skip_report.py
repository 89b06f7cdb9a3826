"""What a run leaves out, named in its run folder.

- ``unusable_videos.txt``, written at the start: every video the index holds but the run
  cannot use (path and reason: unreadable, empty, too short) and every row of the source
  list that was dropped while reading it (``file:line: problem``);
- ``skipped_videos.txt``, written at the end: the videos that failed to decode while
  training (``mlfo.data.loading.SkipLog``).
The console gets the counts and the files' paths.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mlfo.data.sources.records import VideoIndex

UNUSABLE_FILE = "unusable_videos.txt"
SKIPPED_FILE = "skipped_videos.txt"
SHOWN = 5  # dropped rows printed on the console (all of them are in the file)


def report_unusable(index: VideoIndex, min_frames: int, out_dir: str | Path | None, source: str) -> list[str]:
    """Write ``out_dir/unusable_videos.txt`` (when anything was left out; None: print only)
    and print one line per kind with its count; returns the file's lines."""
    problems, rows = index.problems(min_frames), list(index.skipped)
    lines = []
    if problems:
        lines += ["# videos left out (path<TAB>reason)"] + [f"{p}\t{reason}" for p, reason in problems]
    if rows:
        lines += [f"# rows of {source} dropped (file:line: problem)"] + rows
    target = Path(out_dir) / UNUSABLE_FILE if out_dir is not None else None
    if target is not None:
        if lines:
            target.write_text("".join(line + "\n" for line in lines))
        else:
            target.unlink(missing_ok=True)  # a list from an earlier start would describe other data
    where = f", listed in {target}" if target is not None else ""
    if problems:
        print(f"mlfo: {len(problems)} of {len(index.records)} videos unusable (unreadable or at most "
              f"{min_frames} frames){where}", file=sys.stderr)
    if rows:
        shown = "\n  ".join(rows[:SHOWN]) + (f"\n  ... ({len(rows) - SHOWN} more)" if len(rows) > SHOWN else "")
        print(f"mlfo: {len(rows)} row(s) of {source} dropped{where}:\n  {shown}", file=sys.stderr)
    return lines


def write_skip_summary(out_dir: str | Path, skipped: list[str]) -> None:
    """``skipped_videos.txt`` and a console summary of the videos that failed mid-run."""
    if not skipped:
        return
    path = Path(out_dir) / SKIPPED_FILE
    path.write_text("".join(p + "\n" for p in skipped))
    shown = "\n  ".join(skipped[:20]) + (f"\n  ... ({len(skipped) - 20} more)" if len(skipped) > 20 else "")
    print(f"mlfo: skipped {len(skipped)} unreadable video(s) during training (list in {path}):\n  {shown}",
          file=sys.stderr)
