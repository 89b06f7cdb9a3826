"""mlfo: self-supervised video representation learning with Multi-level Feature Optimization."""

__version__ = "0.1.0"


def load_encoder(path, map_location="cpu"):
    """Load a pretrained backbone from an exported encoder file or a pretraining checkpoint."""
    from mlfo.train.export import load_encoder as _load

    return _load(path, map_location=map_location)
