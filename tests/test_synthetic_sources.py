"""The offline synthetic source: shapes, ranges, determinism, FSDD-like naming and split, speed."""
import re
import time
import wave

import numpy as np
import pytest

from common.data import synthetic
from common.data.raw import RawSources, RawSplit
from common.data.synthetic import synthetic_raw_sources, write_wav

N_TRAIN, N_TEST = 160, 40
NAME = re.compile(r"^(\d)_(spk\d+)_(\d+)$")


@pytest.fixture(scope="module")
def small():
    return synthetic_raw_sources(N_TRAIN, N_TEST, seed=0)


@pytest.fixture(scope="module")
def small_again(small):
    """A second build with the same arguments (the glyph cache is warm now), timed."""
    start = time.perf_counter()
    src = synthetic_raw_sources(N_TRAIN, N_TEST, seed=0)
    return src, time.perf_counter() - start


@pytest.fixture(scope="module")
def other_seed(small):
    return synthetic_raw_sources(N_TRAIN, N_TEST, seed=1)


def test_containers_and_fingerprint(small):
    assert isinstance(small, RawSources)
    assert small.name == "synthetic"
    assert isinstance(small.train, RawSplit) and isinstance(small.test, RawSplit)
    assert re.fullmatch(r"[0-9a-f]{64}", small.fingerprint)
    assert synthetic._fingerprint(N_TRAIN, N_TEST, 0) == small.fingerprint
    assert synthetic._fingerprint(N_TRAIN, N_TEST, 1) != small.fingerprint
    assert synthetic._fingerprint(N_TRAIN + 1, N_TEST, 0) != small.fingerprint


@pytest.mark.parametrize("split, n", [("train", N_TRAIN), ("test", N_TEST)])
def test_images(small, split, n):
    s = getattr(small, split)
    assert s.images.shape == (n, 28, 28) and s.images.dtype == np.uint8
    assert s.image_labels.shape == (n,) and s.image_labels.dtype == np.int64
    assert set(np.unique(s.image_labels)) == set(range(10))
    counts = np.bincount(s.image_labels, minlength=10)
    assert counts.max() - counts.min() <= 1                       # balanced
    imgs = s.images.astype(np.float64)
    assert (imgs.reshape(n, -1).max(1) >= 200).all()               # a bright stroke in every image
    ink = (imgs > 0).reshape(n, -1).mean(1)
    assert ((ink > 0.04) & (ink < 0.6)).all()                      # neither blank nor filled
    assert np.median(imgs[:, 0, :]) == 0 and np.median(imgs[:, :, 0]) == 0   # black background
    # centred by mass like MNIST
    ys, xs = np.mgrid[0:28, 0:28]
    mass = imgs.sum((1, 2))
    cy, cx = (imgs * ys).sum((1, 2)) / mass, (imgs * xs).sum((1, 2)) / mass
    assert np.abs(cy - 13.5).max() < 1.5 and np.abs(cx - 13.5).max() < 1.5


@pytest.mark.parametrize("split", ["train", "test"])
def test_recordings(small, split):
    s = getattr(small, split)
    assert len(s.recordings) == len(s.recording_labels) == len(s.recording_names) > 0
    assert s.recording_labels.dtype == np.int64
    for rec in s.recordings:
        assert isinstance(rec, np.ndarray) and rec.dtype == np.int16 and rec.ndim == 1
        assert 800 <= rec.shape[0] <= 8000
        peak = np.abs(rec.astype(np.int32)).max()
        assert 0.2 * 32767 <= peak <= 32767                        # loud, not silent
        assert np.sqrt(np.mean(rec.astype(np.float64) ** 2)) > 300


def test_names_and_fsdd_split(small):
    speakers = {}
    for split, test in (("train", False), ("test", True)):
        s = getattr(small, split)
        seen = set()
        for name, label in zip(s.recording_names, s.recording_labels):
            m = NAME.match(name)
            assert m, name
            digit, speaker, take = int(m.group(1)), m.group(2), int(m.group(3))
            assert digit == label
            assert (take < 5) == test                              # takes 0-4 are the test split
            seen.add((digit, speaker, take))
        assert len(seen) == len(s.recording_names)                 # names are unique
        speakers[split] = {sp for _, sp, _ in seen}
        assert {d for d, _, _ in seen} == set(range(10))           # every digit in both splits
    assert speakers["train"] == speakers["test"]
    n_spk, n_takes = synthetic.pool_plan(N_TRAIN, N_TEST)
    assert len(small.test.recordings) == 10 * n_spk * 5
    assert len(small.train.recordings) == 10 * n_spk * (n_takes - 5) > 0


def test_pool_plan_default_is_fsdd_sized():
    n_spk, n_takes = synthetic.pool_plan(17560, 5859)
    assert 2500 <= 10 * n_spk * n_takes <= 4000
    assert n_spk >= 6


def test_same_seed_is_identical(small, small_again):
    again, _ = small_again
    for split in ("train", "test"):
        a, b = getattr(small, split), getattr(again, split)
        assert np.array_equal(a.images, b.images)
        assert np.array_equal(a.image_labels, b.image_labels)
        assert np.array_equal(a.recording_labels, b.recording_labels)
        assert a.recording_names == b.recording_names
        assert all(np.array_equal(x, y) for x, y in zip(a.recordings, b.recordings))
    assert small.fingerprint == again.fingerprint


def test_other_seed_differs(small, other_seed):
    assert small.fingerprint != other_seed.fingerprint
    assert not np.array_equal(small.train.images, other_seed.train.images)
    a, b = small.test.recordings[0], other_seed.test.recordings[0]
    assert a.shape != b.shape or not np.array_equal(a, b)


def test_write_wav_roundtrip(tmp_path, small):
    rec = small.test.recordings[0]
    path = tmp_path / "sub" / "0_spk0_0.wav"
    write_wav(path, rec)
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
        back = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    assert np.array_equal(back, rec)
    assert sorted(p.name for p in path.parent.iterdir()) == ["0_spk0_0.wav"]   # no temp file left
    with pytest.raises(ValueError):
        write_wav(tmp_path / "bad.wav", rec.astype(np.float32))
