"""Evaluation of frozen and fine-tuned encoders, each run recorded as an eval card.

extract (features over explicit views) -> retrieval / knn / linear on cached features;
finetune trains end to end; cards + report make every number traceable to its protocol.
"""
