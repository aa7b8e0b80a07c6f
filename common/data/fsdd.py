"""Reader for the Free Spoken Digit Dataset: `{digit}_{speaker}_{take}.wav`, 8 kHz 16-bit mono."""
import os
import re
import sys
import wave

import numpy as np

from ..io import atomic_path
from .errors import DataError

SAMPLE_RATE = 8000
NAME_PATTERN = re.compile(r"^([0-9])_([A-Za-z0-9]+)_([0-9]+)\.wav$")
TEST_TAKES = range(0, 5)  # the dataset's official split: takes 0-4 test, 5-49 train


def read_wav(path):
    """int16 samples of an 8 kHz, 16-bit, mono wav file; anything else is a DataError."""
    try:
        with wave.open(path, "rb") as w:
            rate, width, channels = w.getframerate(), w.getsampwidth(), w.getnchannels()
            if (rate, width, channels) != (SAMPLE_RATE, 2, 1):
                raise DataError(
                    f"bad wav file {path}: {rate} Hz, {8 * width}-bit, {channels} channel(s); "
                    f"expected {SAMPLE_RATE} Hz, 16-bit, mono")
            frames = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as e:
        reason = str(e) or ("an empty file (0 bytes)" if os.path.getsize(path) == 0 else
                            f"the file ends too early ({os.path.getsize(path)} bytes)")
        raise DataError(f"corrupt wav file {path}: {reason}") from None
    except FileNotFoundError:
        raise DataError(f"missing wav file: {path}") from None
    except OSError as e:
        raise DataError(f"cannot read wav file {path}: {e.strerror or e}") from None
    if len(frames) % 2:
        raise DataError(f"corrupt wav file {path}: truncated sample data")
    samples = np.frombuffer(frames, dtype="<i2")
    if samples.size == 0:
        raise DataError(f"corrupt wav file {path}: no samples")
    return samples.astype(np.int16)


_warned_strays = set()  # .wav files already named in a warning (once per process)


def list_recordings(recordings_dir):
    """Sorted (name, digit, speaker, take) for every well-named wav file in the folder.

    A .wav file not named digit_speaker_take.wav is skipped, and named once in a warning."""
    if not os.path.isdir(recordings_dir):
        raise DataError(f"missing recordings folder: {recordings_dir}")
    entries, strays = [], []
    for fname in sorted(os.listdir(recordings_dir)):
        m = NAME_PATTERN.match(fname)
        if m:
            entries.append((fname[:-4], int(m.group(1)), m.group(2), int(m.group(3))))
        elif fname.lower().endswith(".wav"):
            strays.append(fname)
    new = [f for f in strays if os.path.join(recordings_dir, f) not in _warned_strays]
    if new:
        _warned_strays.update(os.path.join(recordings_dir, f) for f in new)
        shown = ", ".join(new[:5]) + (f" and {len(new) - 5} more" if len(new) > 5 else "")
        print(f"warning: skipping {len(new)} .wav file(s) in {recordings_dir} not named "
              f"digit_speaker_take.wav: {shown}", file=sys.stderr)
    if not entries:
        raise DataError(f"no recordings named digit_speaker_take.wav in {recordings_dir}")
    return entries


def load_recordings(recordings_dir):
    """{'train': (recordings, labels, names), 'test': (...)} by the official take split."""
    out = {"train": ([], [], []), "test": ([], [], [])}
    for name, digit, _speaker, take in list_recordings(recordings_dir):
        split = "test" if take in TEST_TAKES else "train"
        samples = read_wav(os.path.join(recordings_dir, name + ".wav"))
        out[split][0].append(samples)
        out[split][1].append(digit)
        out[split][2].append(name)
    for split, (_, labels, _) in out.items():
        if not labels:
            raise DataError(f"no {split} recordings in {recordings_dir} (takes 0-4 are test, 5+ train)")
    return {s: (recs, np.array(labels, dtype=np.int64), names) for s, (recs, labels, names) in out.items()}


def write_wav(path, samples_int16, rate=SAMPLE_RATE):
    """Write one-dimensional int16 samples as a mono 16-bit wav file, atomically."""
    samples = np.asarray(samples_int16)
    if samples.dtype != np.int16 or samples.ndim != 1:
        raise ValueError("write_wav expects a one-dimensional int16 array")
    with atomic_path(os.fspath(path)) as tmp, wave.open(tmp, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(rate))
        w.writeframes(samples.astype("<i2").tobytes())
