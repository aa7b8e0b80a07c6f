"""The raw material every source hands to the pairing recipe.

A source (real MNIST + FSDD, or the offline synthetic generator) provides, per
split, a pool of digit images and a pool of digit recordings. The recipe in
`recipe.py` pairs and corrupts them identically whatever the source.
"""
from dataclasses import dataclass

import numpy as np


@dataclass
class RawSplit:
    images: np.ndarray            # uint8 [M,28,28], white stroke on black, like MNIST
    image_labels: np.ndarray      # int64 [M], digits 0-9
    recordings: list              # R one-dimensional int16 arrays sampled at 8 kHz
    recording_labels: np.ndarray  # int64 [R], digits 0-9
    recording_names: list         # R names such as "3_jackson_12" (digit_speaker_take)


@dataclass
class RawSources:
    name: str          # "avdigits" or "synthetic"
    train: RawSplit
    test: RawSplit
    fingerprint: str   # hex digest identifying the raw content (keys the cache)
