"""The avdigits recipe: pair digit images with spoken digits, then corrupt one view.

Version 1 (see docs/DATASET.md for the card):
- each split takes the first N images of a seeded permutation of its image pool
  (no repeats) and gives each a recording of the same digit drawn uniformly from
  that split's recording pool;
- audio: int16 -> float, remove the mean, centre-crop to one second if longer,
  place at a uniformly random offset inside one second of zeros;
- regime per pair, uniformly: image_noisy, audio_noisy, both_mild;
- image noise: each pixel replaced with probability p by a value drawn uniformly
  from {0, 0.5, 1}; p ~ U(0.50, 0.85) for the noisy view, U(0.05, 0.30) otherwise;
- audio noise: white Gaussian noise over the whole second at an SNR measured
  against the utterance's own power (not the padding); SNR ~ U(-15, -5) dB for
  the noisy view, U(10, 25) dB otherwise; then each waveform is standardised.

The same recipe serves the real and the synthetic raw sources, so numbers on
the two differ only by what the raw pools contain.

Numerics v2: the audio arithmetic is float64 with sums taken exactly
(exact_row_sums) and one rounding to float32 at the end, so the built tensors,
and the dataset fingerprint, are bit-identical on every machine with the same
raw files; v1 used float32 numpy sums, whose last bits depended on the CPU.
"""
import numpy as np
import torch

from .dataset import REGIMES, Dataset, Split, fingerprint_splits
from .errors import DataError
from .raw import speaker_of

RECIPE_VERSION = 1
# How the recipe's arithmetic is done (not what it draws): 2 = float64 with exact integer sums,
# rounded once to float32, so a build is bit-identical on every machine (see exact_row_sums).
NUMERICS_VERSION = 2
AUDIO_LENGTH = 8000
DEFAULT_SIZES = {"train": 17_560, "test": 5_859}  # the course's sizes
NOISY_P, MILD_P = (0.50, 0.85), (0.05, 0.30)
NOISY_SNR_DB, MILD_SNR_DB = (-15.0, -5.0), (10.0, 25.0)
PIXEL_VALUES = np.array([0.0, 0.5, 1.0], dtype=np.float32)
CHUNK = 2048  # pairs corrupted at once: bounds the temporary memory of the noise
ROW_BLOCK = 64  # waveforms per step of the audio arithmetic (see _row_blocks)
# A validation-speaker build (--val-speaker) fixes its validation pairs when it is built: this share of
# the training split (the default --val-fraction), each paired with a recording of that speaker.
VAL_SPEAKER_SHARE = 0.2


def recipe_params(sizes, seed, clean_views=False, holdout_speaker=None, val_speaker=None):
    params = {"recipe_version": RECIPE_VERSION, "numerics": NUMERICS_VERSION, "seed": int(seed),
              "clean_views": bool(clean_views),
              "sizes": {k: int(v) for k, v in sizes.items()},
              "image_p": {"noisy": NOISY_P, "mild": MILD_P},
              "audio_snr_db": {"noisy": NOISY_SNR_DB, "mild": MILD_SNR_DB}}
    if holdout_speaker:  # only when set, so the builds (and cache keys) of the speaker-seen split stay as they were
        params["holdout_speaker"] = holdout_speaker
    if val_speaker:  # likewise: the builds without a validation speaker keep their keys
        params["val_speaker"] = val_speaker
    return params


def corrupt_images(images, p, rng):
    """Replace each pixel with probability p[i] by 0, 0.5 or 1. images: float32 [N,28,28]."""
    replace = rng.random(images.shape, dtype=np.float32) < p[:, None, None]
    values = PIXEL_VALUES[rng.integers(0, 3, size=images.shape)]
    return np.where(replace, values, images)


def exact_row_sums(values):
    """Sums along the last axis of a float64 array that come out the same on every machine.

    numpy adds floats in an order set by the SIMD width its loops were compiled for, so
    the last bits of a float sum differ between CPUs. Here each row is scaled by a power
    of two chosen from the row's largest magnitude (a max, which is exact), rounded to
    integers and summed in int64, which is exact in any order. Parts below about 2^-49
    of the row's peak are rounded away: far below float32 resolution.
    """
    values = np.asarray(values, dtype=np.float64)
    peak = np.maximum(values.max(axis=-1), -values.min(axis=-1))[..., None]
    _, exponent = np.frexp(peak)  # peak < 2**exponent
    scale = (62 - int(values.shape[-1]).bit_length()) - exponent  # |sum of the integers| < 2**62
    scale = np.minimum(scale, 1000)  # rows of (near-)zeros: keep 2**scale finite
    scaled = values * np.ldexp(1.0, scale)  # times a power of two: exact, the same as ldexp, faster
    np.rint(scaled, out=scaled)
    return np.ldexp(scaled.astype(np.int64).sum(axis=-1).astype(np.float64), -scale[..., 0])


def place_utterances(recordings, offsets_u, length=AUDIO_LENGTH):
    """Centre each recording in a second, zero-padded at a random offset.

    offsets_u in [0,1) picks the offset uniformly among the valid ones.
    Returns float64 [N,length], plus the start and length of each utterance.
    The mean removed is an exact integer sum over the int16 samples, divided once.
    """
    out = np.zeros((len(recordings), length), dtype=np.float64)
    starts = np.zeros(len(recordings), dtype=np.int64)
    lengths = np.zeros(len(recordings), dtype=np.int64)
    for i, rec in enumerate(recordings):
        samples = np.asarray(rec).astype(np.int64)
        x = samples / 32768.0 - samples.sum() / (32768.0 * samples.size)
        if x.size > length:  # centre-crop
            cut = (x.size - length) // 2
            x = x[cut:cut + length]
        start = int(offsets_u[i] * (length - x.size + 1))
        out[i, start:start + x.size] = x
        starts[i], lengths[i] = start, x.size
    return out, starts, lengths


def _row_blocks(n_rows):
    """(lo, hi) bounds of ROW_BLOCK rows: the float64 temporaries of one block stay in the CPU's
    cache, which makes the audio arithmetic 2-3x faster than on whole chunks; every step is per
    row, so the results are the same bits."""
    return ((lo, min(lo + ROW_BLOCK, n_rows)) for lo in range(0, n_rows, ROW_BLOCK))


def add_noise_at_snr(clean, starts, lengths, snr_db, rng):
    """Add white Gaussian noise over the whole second at the given SNR (float64 out).

    The signal power is the mean square over the utterance itself, not the
    zero padding, so an SNR means the same for short and long words. The power
    ratio 10^(SNR/10) comes from Python's pow, not numpy's CPU-dispatched one.
    """
    clean = np.asarray(clean, dtype=np.float64)
    power_ratio = np.array([10.0 ** (float(snr) / 10.0) for snr in snr_db], dtype=np.float64)
    noise = rng.standard_normal(clean.shape, dtype=np.float32)  # one draw for all rows: the stream's order
    positions = np.arange(clean.shape[1])[None, :]
    noisy = np.empty_like(clean)
    for lo, hi in _row_blocks(len(clean)):
        rows = clean[lo:hi]
        inside = (positions >= starts[lo:hi, None]) & (positions < (starts[lo:hi] + lengths[lo:hi])[:, None])
        signal_power = exact_row_sums(rows * rows * inside) / lengths[lo:hi]
        noise_std = np.sqrt(signal_power / power_ratio[lo:hi])
        noisy[lo:hi] = rows + noise[lo:hi].astype(np.float64) * noise_std[:, None]
    return noisy


def standardise(audio):
    """Zero mean, unit variance per waveform, rounded once to float32; also the mean and std used."""
    audio = np.asarray(audio, dtype=np.float64)
    n = audio.shape[1]
    out = np.empty(audio.shape, dtype=np.float32)
    mean, std = np.empty(len(audio)), np.empty(len(audio))
    for lo, hi in _row_blocks(len(audio)):
        mean[lo:hi] = exact_row_sums(audio[lo:hi]) / n
        centred = audio[lo:hi] - mean[lo:hi, None]
        std[lo:hi] = np.sqrt(exact_row_sums(centred * centred) / n) + 1e-8
        out[lo:hi] = centred / std[lo:hi, None]  # the one rounding to float32
    return out, mean.astype(np.float32), std.astype(np.float32)


def draw_pairs(raw, n, rng, allowed=None):
    """The recipe's draws for one split, before any noise: which image and recording make each
    pair, its regime, its noise levels and the utterance offset. A dict of numpy arrays.
    allowed: a bool mask of the recordings the pairs may use (None: all of them)."""
    if n > len(raw.images):
        raise DataError(f"asked for {n} pairs but the image pool holds {len(raw.images)}")
    image_index = rng.permutation(len(raw.images))[:n]
    label = raw.image_labels[image_index]
    allowed = np.ones(len(raw.recording_labels), bool) if allowed is None else allowed
    pools = {d: np.flatnonzero((raw.recording_labels == d) & allowed) for d in range(10)}
    recording_index = np.empty(n, dtype=np.int64)
    for d in range(10):
        where = np.flatnonzero(label == d)
        if len(where) and not len(pools[d]):
            raise DataError(f"no recording of digit {d} in the recordings of this split: "
                            "the recordings folder is incomplete")
        recording_index[where] = pools[d][rng.integers(0, len(pools[d]), size=len(where))]
    regime = rng.integers(0, len(REGIMES), size=n)
    image_noisy = regime == REGIMES.index("image_noisy")
    audio_noisy = regime == REGIMES.index("audio_noisy")
    p = np.where(image_noisy, rng.uniform(*NOISY_P, size=n), rng.uniform(*MILD_P, size=n)).astype(np.float32)
    snr_db = np.where(audio_noisy, rng.uniform(*NOISY_SNR_DB, size=n),
                      rng.uniform(*MILD_SNR_DB, size=n)).astype(np.float32)
    offsets_u = rng.random(n)
    return {"image_index": image_index, "label": label, "recording_index": recording_index, "regime": regime,
            "p": p, "snr_db": snr_db, "offsets_u": offsets_u}


def draw_val_speaker_pairs(raw, n, rng, speaker, val_rng):
    """draw_pairs for the training split of a validation-speaker build: the training pairs never
    use `speaker`'s recordings; a seeded share VAL_SPEAKER_SHARE of the pairs (drawn from val_rng,
    a stream of its own) is the validation set, each pair's recording replaced by one of
    `speaker`'s takes of the same digit. pairs["val"] marks them."""
    voice = np.array([speaker_of(name) == speaker for name in raw.recording_names], dtype=bool)
    if not voice.any():
        raise DataError(f"--val-speaker {speaker}: no training recordings of that speaker")
    pairs = draw_pairs(raw, n, rng, allowed=~voice)
    val = np.zeros(n, dtype=bool)
    val[val_rng.permutation(n)[:int(round(n * VAL_SPEAKER_SHARE))]] = True
    for d in range(10):
        rows = np.flatnonzero(val & (pairs["label"] == d))
        pool = np.flatnonzero(voice & (raw.recording_labels == d))
        if len(rows) and not len(pool):
            raise DataError(f"--val-speaker {speaker}: no recording of digit {d} by that speaker")
        pairs["recording_index"][rows] = pool[val_rng.integers(0, len(pool), size=len(rows))]
    pairs["val"] = val
    return pairs


def render_pairs(raw, pairs, rng, progress=None):
    """The noisy views of drawn pairs: each image corrupted at pairs["p"], each recording placed
    at its offset and noised at pairs["snr_db"] (p = 0 and SNR = +inf leave a view clean).
    The one definition of the corruption: training data and robustness sweeps both come from it."""
    n = len(pairs["label"])
    image_index, recording_index, p, snr_db = (pairs[k] for k in ("image_index", "recording_index", "p", "snr_db"))
    images = np.empty((n, 28, 28), dtype=np.float32)
    audio = np.empty((n, AUDIO_LENGTH), dtype=np.float32)
    starts, lengths = np.empty(n, np.int64), np.empty(n, np.int64)
    audio_mean, audio_std = np.empty(n, np.float32), np.empty(n, np.float32)
    for lo in range(0, n, CHUNK):
        hi = min(lo + CHUNK, n)
        clean_img = raw.images[image_index[lo:hi]].astype(np.float32) / 255.0
        images[lo:hi] = corrupt_images(clean_img, p[lo:hi], rng)
        clean, starts[lo:hi], lengths[lo:hi] = place_utterances(
            [raw.recordings[j] for j in recording_index[lo:hi]], pairs["offsets_u"][lo:hi])
        noisy = add_noise_at_snr(clean, starts[lo:hi], lengths[lo:hi], snr_db[lo:hi], rng)
        audio[lo:hi], audio_mean[lo:hi], audio_std[lo:hi] = standardise(noisy)
        if progress is not None:
            progress.update(hi - lo)
    meta = {
        "regime": torch.from_numpy(pairs["regime"].astype(np.int64)),
        "image_p": torch.from_numpy(p),
        "audio_snr_db": torch.from_numpy(snr_db),
        "image_index": torch.from_numpy(image_index.astype(np.int64)),
        "recording_index": torch.from_numpy(recording_index),
        "audio_start": torch.from_numpy(starts),
        "audio_length": torch.from_numpy(lengths),
        "audio_mean": torch.from_numpy(audio_mean),
        "audio_std": torch.from_numpy(audio_std),
    }
    if "val" in pairs:  # a validation-speaker build: its validation pairs are fixed
        meta["val"] = torch.from_numpy(pairs["val"])
    return Split(image=torch.from_numpy(images).unsqueeze(1), audio=torch.from_numpy(audio).unsqueeze(1),
                 label=torch.from_numpy(pairs["label"].astype(np.int64)), meta=meta,
                 recording_names=list(raw.recording_names))


def build_split(raw, n, rng, progress=None, clean_views=False, val_speaker=None, val_rng=None):
    """Pair and corrupt one split of a RawSources. Returns a Split.

    clean_views: pair exactly as usual but apply no noise (p = 0, SNR = +inf),
    for measuring how hard the clean views themselves are.
    val_speaker: the validation pairs are this speaker's alone, the others never hear them
    (draw_val_speaker_pairs, with val_rng).
    """
    pairs = draw_pairs(raw, n, rng) if val_speaker is None else \
        draw_val_speaker_pairs(raw, n, rng, val_speaker, val_rng)
    if clean_views:  # the draws above still happen, so pairing and offsets match the noisy build
        pairs.update(p=np.zeros_like(pairs["p"]), snr_db=np.full_like(pairs["snr_db"], np.inf))
    return render_pairs(raw, pairs, rng, progress)


def split_generators(seed):
    """The generators of the train and the test split for a data seed (independent streams)."""
    train_seq, test_seq = np.random.SeedSequence([RECIPE_VERSION, int(seed)]).spawn(2)
    return np.random.default_rng(train_seq), np.random.default_rng(test_seq)


def drawn_test_pairs(raw, n, seed):
    """The first-stage draws of the test split that build_dataset(raw, sizes, seed) makes."""
    return draw_pairs(raw.test, n, split_generators(seed)[1])


def drawn_train_pairs(raw, n, seed, val_speaker=None):
    """The first-stage draws of the training split that build_dataset(raw, sizes, seed, val_speaker=...)
    makes (with val_speaker, pairs["val"] marks the validation pairs)."""
    rng = split_generators(seed)[0]
    return draw_pairs(raw, n, rng) if val_speaker is None else \
        draw_val_speaker_pairs(raw, n, rng, val_speaker, val_speaker_generator(seed))


def val_speaker_generator(seed):
    """The stream that picks a validation-speaker build's validation pairs and their recordings."""
    return np.random.default_rng(np.random.SeedSequence([RECIPE_VERSION, int(seed), 0x5A1]))


def build_dataset(raw, sizes, seed, progress=None, clean_views=False, holdout_speaker=None, val_speaker=None):
    """The recipe applied to both splits of `raw`, deterministic in `seed` (holdout_speaker: the
    speaker `raw` was held out by, raw.hold_out_speaker; recorded in the info; val_speaker: a
    second speaker whose recordings make the validation pairs only, see draw_val_speaker_pairs).
    The test split does not depend on val_speaker."""
    if val_speaker is not None and val_speaker == holdout_speaker:
        raise DataError(f"--val-speaker {val_speaker} is the held-out test speaker; pick another")
    train_rng, test_rng = split_generators(seed)
    train = build_split(raw.train, sizes["train"], train_rng, progress, clean_views, val_speaker,
                        val_speaker_generator(seed) if val_speaker else None)
    test = build_split(raw.test, sizes["test"], test_rng, progress, clean_views)
    info = recipe_params(sizes, seed, clean_views, holdout_speaker, val_speaker)
    info["raw_fingerprint"] = raw.fingerprint
    return Dataset(name=raw.name, train=train, test=test,
                   fingerprint=fingerprint_splits(train, test), info=info)
