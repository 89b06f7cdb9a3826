"""The built-in demo dataset: synthetic labelled action videos, written as real H.264 mp4.

Most classes are defined by *motion* (direction, zoom, rotation, acceleration, forward vs
reversed playback) and a few by *appearance* (the object's shape), so a representation
scores well on the motion group only if it captures motion. To keep appearance from
identifying a video cheaply (see docs on the demo data), every motion-class video draws
its background, object textures and object shapes from one small pool shared by all
motion classes, and its motion parameters (direction, speed, zoom or spin rate, gravity)
vary continuously within the class. Every motion is asymmetric in time (reversed
playback of "fall" is its own class, "zoom in" reversed is "zoom out", ...), so the
time-reversed hard negatives of MLFO are learnable.

One module per part: ``classes`` (what each class is), ``render`` (frames),
``encode`` (H.264 through PyAV), ``dataset`` (files, CSV lists, classes.json).

    generate_demo_dataset("demo_data", seed=0)   # videos/*.mp4, all/train/test.csv, classes.json
"""

from mlfo.data.demo.classes import CLASS_NAMES, CLASSES, DemoClass
from mlfo.data.demo.dataset import demo_summary, ensure_demo_source, generate_demo_dataset
from mlfo.data.demo.encode import write_mp4
from mlfo.data.demo.render import render_demo_video, texture_pool

__all__ = ["CLASSES", "CLASS_NAMES", "DemoClass", "demo_summary", "ensure_demo_source", "generate_demo_dataset",
           "render_demo_video", "texture_pool", "write_mp4"]
