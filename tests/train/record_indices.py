"""``mlfo`` CLI (argv) in this process, recording each training step's video indices per
rank (train_helpers.recording_train_step): run under torchrun by the resume tests."""

import sys

from mlfo.cli import main
from mlfo.train.engine import Trainer
from train_helpers import recording_train_step

Trainer.train_step = recording_train_step(Trainer.train_step)
sys.exit(main(sys.argv[1:]))
