"""``mlfo`` CLI (argv) in this process, recording per rank each training step's video
indices (``train_helpers.recording_train_step``, in the run folder) and the test videos
this rank scored (``scored-rank<R>.jsonl`` in ``$MLFO_RECORD_DIR``): run under torchrun
by the fine-tune tests."""

import json
import os
import sys

import mlfo.eval.finetune as finetune
from mlfo.cli import main
from mlfo.train.engine import Trainer
from train_helpers import recording_train_step

Trainer.train_step = recording_train_step(Trainer.train_step)
_real_compute = finetune.compute_features


def recording_compute(encoders, dataset, **kwargs):
    rank = os.environ.get("RANK", "0")
    with open(os.path.join(os.environ["MLFO_RECORD_DIR"], f"scored-rank{rank}.jsonl"), "a") as f:
        f.write(json.dumps([str(r.path) for r in dataset.records]) + "\n")
    return _real_compute(encoders, dataset, **kwargs)


finetune.compute_features = recording_compute
sys.exit(main(sys.argv[1:]))
