"""mlfo: self-supervised video representation learning with Multi-level Feature Optimization."""

__version__ = "0.1.0"


def load_encoder(path, map_location="cpu"):
    """A pretrained backbone (VideoResNet, eval mode) from an exported encoder (.safetensors), a
    pretraining checkpoint or a plain tensor .pt state dict; nothing in the file is run."""
    from mlfo.train.export import load_encoder as _load

    return _load(path, map_location=map_location)
