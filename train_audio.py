"""Problem 1b: train the audio-only Conv1Net on the noisy spoken-digit waveforms.

Adam, dropout 0.5, early stopping on validation loss, best weights restored
before the test split is touched once. Writes runs/NAME/ (config, metrics,
TensorBoard events, checkpoints, figures, test predictions).

The training loop is train_image.py's, run on the audio view with Conv1Net:
one loop for both unimodal models, read it there.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # train_image.py sits beside this file
from common.training.cli import run_main  # noqa: E402
from train_image import main  # noqa: E402

if __name__ == "__main__":
    run_main(lambda: main(view="audio", description=__doc__))
