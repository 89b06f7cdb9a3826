"""Evaluation of frozen and fine-tuned encoders, each run recorded as an eval card.

extract (features over explicit views) -> retrieval / knn / linear on cached features;
finetune trains end to end; cards + report make every number traceable to its protocol.
The functions below (``mlfo.eval.api``) are what the CLI and ``mlfo demo`` call.
"""

_API = {
    "extract_features", "evaluate_retrieval", "evaluate_knn", "evaluate_linear", "evaluate_finetune",
    "report", "feature_roots",
}
_CONFIGS = {
    "ViewConfig": "mlfo.eval.views", "RetrievalConfig": "mlfo.eval.retrieval", "KnnConfig": "mlfo.eval.knn",
    "LinearProbeConfig": "mlfo.eval.linear", "FinetuneConfig": "mlfo.eval.finetune",
    "EvalData": "mlfo.data.splits",
}

__all__ = sorted(_API | set(_CONFIGS))


def __getattr__(name: str):
    # Lazy, so that importing one eval module (cards, for ``mlfo report``) stays light.
    import importlib

    if name in _API:
        return getattr(importlib.import_module("mlfo.eval.api"), name)
    if name in _CONFIGS:
        return getattr(importlib.import_module(_CONFIGS[name]), name)
    raise AttributeError(f"module 'mlfo.eval' has no attribute {name!r}")
