"""The raw material every source hands to the pairing recipe.

A source (real MNIST + FSDD, or the offline synthetic generator) provides, per
split, a pool of digit images and a pool of digit recordings. The recipe in
`recipe.py` pairs and corrupts them identically whatever the source.
"""
from dataclasses import dataclass

import numpy as np

from .errors import DataError


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


def speaker_of(name):
    """The speaker of a recording name digit_speaker_take ("3_jackson_12" -> "jackson")."""
    return name.split("_")[1]


def hold_out_speaker(raw, speaker):
    """The raw pools with one speaker's voice kept out of training: the training recordings lose
    every take of `speaker`, and the test recordings are all of that speaker's takes (training
    and test takes alike) and nobody else's. The images are untouched."""
    speakers = sorted({speaker_of(n) for split in (raw.train, raw.test) for n in split.recording_names})
    if speaker not in speakers:
        raise DataError(f"--holdout-speaker {speaker}: no recordings of that speaker in {raw.name} "
                        f"(speakers: {', '.join(speakers)})")

    def recordings(split, keep):
        index = [i for i, n in enumerate(split.recording_names) if keep(speaker_of(n))]
        return ([split.recordings[i] for i in index], split.recording_labels[index],
                [split.recording_names[i] for i in index])

    train = recordings(raw.train, lambda s: s != speaker)
    heard, unheard = recordings(raw.train, lambda s: s == speaker), recordings(raw.test, lambda s: s == speaker)
    test = (unheard[0] + heard[0], np.concatenate([unheard[1], heard[1]]), unheard[2] + heard[2])
    return RawSources(name=raw.name, fingerprint=raw.fingerprint,
                      train=RawSplit(raw.train.images, raw.train.image_labels, *train),
                      test=RawSplit(raw.test.images, raw.test.image_labels, *test))
