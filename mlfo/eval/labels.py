"""Train and test labels matched by class name, and what a score must say about them.

Label k of a feature set means ``protocol.json``'s ``classes[k]``. Two sets extracted
separately (or from different CSVs) may number the classes differently, so comparing
integer labels would score the wrong class; ``align`` renumbers both by name into one
class list. A test class with no train video can never be predicted or retrieved: its
videos stay in the test set, count as misses, and the class is named in the output and
recorded in the card. Test videos the encoder was pretrained on are counted too
(``mlfo.data.provenance``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from mlfo.data import provenance
from mlfo.errors import MLFOError
from mlfo.eval.features import INDEX_FILE, PROTOCOL_FILE, FeatureSet


@dataclass
class LabelNotes:
    """What one split's train/test pair says beyond its numbers (recorded in the card)."""

    absent_from_train: list[str] = field(default_factory=list)  # test classes without a train video
    n_test_absent: int = 0  # test videos of those classes (scored as misses)
    pretraining_overlap: dict | None = None  # test videos the encoder was pretrained on

    def card(self) -> dict:
        out = {}
        if self.absent_from_train:
            out["test_classes_absent_from_train"] = {"classes": self.absent_from_train,
                                                     "test_videos": self.n_test_absent,
                                                     "scored": "as misses"}
        if self.pretraining_overlap and self.pretraining_overlap.get("videos"):
            out["pretraining_overlap"] = self.pretraining_overlap
        return out


def video_class_names(fs: FeatureSet) -> list[str]:
    """The class name of every video of ``fs``: ``classes[label]``, checked against the
    ``label_name`` column; the name column or the integer itself when there is no list."""
    names = []
    classes = fs.classes
    for i, (label, name) in enumerate(zip(fs.labels.tolist(), fs.label_names)):
        if classes:
            if not 0 <= label < len(classes):
                raise MLFOError(f"{fs.directory / INDEX_FILE}:{i + 2}: label {label} outside the "
                                f"{len(classes)} classes of {fs.directory / PROTOCOL_FILE}")
            if name and name != classes[label]:
                raise MLFOError(f"{fs.directory / INDEX_FILE}:{i + 2}: label {label} is {classes[label]!r} in "
                                f"{PROTOCOL_FILE} but {name!r} in {INDEX_FILE}")
            names.append(classes[label])
        else:
            names.append(name or str(label))
    return names


def align(train: FeatureSet, test: FeatureSet) -> tuple[FeatureSet, FeatureSet, LabelNotes]:
    """``train`` and ``test`` renumbered into one class list by name: train's classes, then
    classes only test has; groups merged."""
    train_names, test_names = video_class_names(train), video_class_names(test)
    classes = list(train.classes) or sorted(set(train_names))
    classes += [c for c in dict.fromkeys((test.classes or []) + sorted(set(test_names))) if c not in classes]
    index = {c: i for i, c in enumerate(classes)}
    groups = {**test.groups, **train.groups}
    notes = LabelNotes(*absent_classes(train_names, test_names), test.protocol.get("pretraining_overlap"))

    def renumbered(fs: FeatureSet, names: list[str]) -> FeatureSet:
        protocol = dict(fs.protocol, classes=classes, groups=groups)
        return dataclasses.replace(fs, labels=np.array([index[n] for n in names], dtype=np.int64),
                                   label_names=names, protocol=protocol)

    return renumbered(train, train_names), renumbered(test, test_names), notes


def absent_classes(train_names: list[str], test_names: list[str]) -> tuple[list[str], int]:
    """Test classes (in first-seen order) without a train video, and their test videos."""
    have = set(train_names)
    absent = [c for c in dict.fromkeys(test_names) if c not in have]
    return absent, sum(n not in have for n in test_names)


def notes_line(who: str, notes: LabelNotes) -> str | None:
    """One line for the console, or None when there is nothing to say."""
    parts = []
    if notes.absent_from_train:
        shown = ", ".join(notes.absent_from_train[:5]) + (" ..." if len(notes.absent_from_train) > 5 else "")
        parts.append(f"{len(notes.absent_from_train)} test class(es) without train videos ({shown}): "
                     f"their {notes.n_test_absent} test videos count as misses")
    overlap = notes.pretraining_overlap or {}
    if overlap.get("videos"):
        parts.append(f"{overlap['videos']} of {overlap['of']} test videos were among the encoder's "
                     f"pretraining videos (matched by {provenance.matched_phrase(overlap)})")
    return f"mlfo: {who}: " + "; ".join(parts) if parts else None
