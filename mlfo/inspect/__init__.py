"""Look at what an encoder learned, without labels: ``mlfo inspect`` and the embedding
health numbers (RankMe, alignment, uniformity) that pretraining logs too."""
