"""The demo's classes: eight defined by motion, three by the object's shape.

Every motion is asymmetric in time (reversed playback of "fall" is its own class, "zoom
in" reversed is "zoom out", ...), so the time-reversed hard negatives of MLFO are learnable.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DemoClass:
    name: str
    group: str  # "motion" | "appearance"
    description: str


CLASSES: tuple[DemoClass, ...] = (
    DemoClass("move_up", "motion", "objects drift upward at a constant speed, leaving at the top and re-entering at the bottom"),
    DemoClass("move_down", "motion", "objects drift downward at a constant speed, leaving at the bottom and re-entering at the top"),
    DemoClass("move_sideways", "motion", "objects drift left or right at a constant speed (either way: flip-invariant)"),
    DemoClass("zoom_in", "motion", "the camera zooms in: the whole scene grows about a point"),
    DemoClass("zoom_out", "motion", "the camera zooms out: the whole scene shrinks towards a point"),
    DemoClass("rotate", "motion", "objects spin in place, clockwise or anticlockwise (flip-invariant)"),
    DemoClass("fall", "motion", "objects drop from rest above the frame and accelerate downward (gravity)"),
    DemoClass("fall_reversed", "motion", "'fall' played backwards: objects shoot up from the bottom and decelerate"),
    DemoClass("ring", "appearance", "ring-shaped objects with a generic slow drift and spin"),
    DemoClass("cross", "appearance", "cross-shaped objects with a generic slow drift and spin"),
    DemoClass("triangle", "appearance", "triangular objects with a generic slow drift and spin"),
)
CLASS_NAMES = tuple(c.name for c in CLASSES)

# Shapes of the shared pool (motion classes) vs the shapes that define appearance classes.
POOL_SHAPES = ("disk", "square", "ellipse")
APPEARANCE_SHAPES = {"ring": "ring", "cross": "cross", "triangle": "triangle"}
