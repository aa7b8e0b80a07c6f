"""The data layer: readers, the recipe, the cache, the course loader, the CLI's errors."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from common.data import DataError, batch_indices
from common.data import cache as cache_mod
from common.data import load_dataset, train_val_split, validation_split
from common.data.course import load_course
from common.data.dataset import REGIMES
# ---------------------------------------------------------------- readers
from common.data.fsdd import list_recordings, load_recordings, read_wav
from common.data.mnist import IMAGE_MAGIC, LABEL_MAGIC, read_idx
from common.data.raw import RawSources, RawSplit, speaker_of
from common.data.recipe import (AUDIO_LENGTH, add_noise_at_snr, build_dataset, corrupt_images, exact_row_sums,
                                place_utterances, standardise)

from conftest import (REAL_DATA, ROOT, needs_real, SMALL_SYNTHETIC, make_avdigits_root, run_cli, run_script, write_course,
                      write_idx, write_wav)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_roundtrip(tmp_path, gz):
    images = np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "img", images, gz=gz)
    assert np.array_equal(read_idx(tmp_path / "img", IMAGE_MAGIC, 7), images)


def test_idx_errors_name_the_file(tmp_path):
    images = np.zeros((5, 28, 28), np.uint8)
    write_idx(tmp_path / "ok.gz", images)
    with pytest.raises(DataError, match="items, expected 6"):
        read_idx(tmp_path / "ok.gz", IMAGE_MAGIC, 6)
    with pytest.raises(DataError, match="magic number"):
        read_idx(tmp_path / "ok.gz", LABEL_MAGIC)
    blob = (tmp_path / "plain")
    write_idx(blob, images, gz=False)
    blob.write_bytes(blob.read_bytes()[:-100])  # truncated
    with pytest.raises(DataError, match=r"corrupt MNIST file .*plain.*data bytes"):
        read_idx(blob, IMAGE_MAGIC, 5)
    gz = tmp_path / "cut.gz"
    gz.write_bytes((tmp_path / "ok.gz").read_bytes()[:40])  # a gzip stream cut short
    with pytest.raises(DataError, match="cut.gz"):
        read_idx(gz, IMAGE_MAGIC, 5)
    with pytest.raises(DataError, match="missing MNIST file"):
        read_idx(tmp_path / "nope.gz", IMAGE_MAGIC)


def test_wav_reader_accepts_8k_mono_16bit_only(tmp_path):
    samples = (np.sin(np.arange(800) / 5) * 10000).astype(np.int16)
    write_wav(tmp_path / "0_a_0.wav", samples)
    assert np.array_equal(read_wav(str(tmp_path / "0_a_0.wav")), samples)
    write_wav(tmp_path / "16k.wav", samples, rate=16000)
    with pytest.raises(DataError, match=r"16k.wav: 16000 Hz"):
        read_wav(str(tmp_path / "16k.wav"))
    write_wav(tmp_path / "stereo.wav", np.repeat(samples, 2), channels=2)
    with pytest.raises(DataError, match="2 channel"):
        read_wav(str(tmp_path / "stereo.wav"))
    (tmp_path / "junk.wav").write_bytes(b"RIFF0000WAVEjunk")
    with pytest.raises(DataError, match="junk.wav"):
        read_wav(str(tmp_path / "junk.wav"))


def test_recordings_follow_the_official_take_split(tmp_path):
    for take in (0, 4, 5, 49):
        write_wav(tmp_path / f"3_ann_{take}.wav", np.ones(100, np.int16))
    (tmp_path / "README.txt").write_text("ignored")
    recs = load_recordings(str(tmp_path))
    assert recs["test"][2] == ["3_ann_0", "3_ann_4"]
    assert sorted(recs["train"][2]) == ["3_ann_49", "3_ann_5"]


# ---------------------------------------------------------------- the recipe

def test_corruption_at_zero_level_is_identity():
    rng = np.random.default_rng(0)
    images = rng.random((4, 28, 28), dtype=np.float32)
    assert np.array_equal(corrupt_images(images, np.zeros(4, np.float32), rng), images)
    clean = rng.standard_normal((3, AUDIO_LENGTH)).astype(np.float32)
    starts, lengths = np.zeros(3, np.int64), np.full(3, AUDIO_LENGTH)
    noisy = add_noise_at_snr(clean, starts, lengths, np.full(3, np.inf), rng)
    assert np.array_equal(noisy, clean)


def test_corruption_at_full_level_replaces_every_pixel():
    rng = np.random.default_rng(1)
    images = np.full((2, 28, 28), 0.25, np.float32)
    out = corrupt_images(images, np.ones(2, np.float32), rng)
    assert set(np.unique(out)) == {0.0, 0.5, 1.0}


def test_placement_centre_crops_and_pads():
    long = np.arange(9000, dtype=np.int16)
    short = np.full(100, 1000, np.int16)
    placed, starts, lengths = place_utterances([long, short], np.array([0.0, 0.99999]))
    assert placed.shape == (2, AUDIO_LENGTH)
    assert lengths.tolist() == [8000, 100] and starts.tolist() == [0, 7900]
    assert np.allclose(placed[0], (np.arange(500, 8500) - np.arange(9000).mean()) / 32768, atol=1e-6)
    assert np.all(placed[1, :7900] == 0) and np.allclose(placed[1, 7900:], 0)  # mean removed: all zero


def small_raw(seed=0, n_img=(300, 120), takes=(8, 3)):
    """A RawSources of random images and noise bursts, enough to exercise the recipe."""
    rng = np.random.default_rng(seed)

    def split(n, n_takes, name):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        recs, labels, names = [], [], []
        for d in range(10):
            for t in range(n_takes):
                recs.append((rng.standard_normal(int(rng.integers(1500, 9000))) * 4000).astype(np.int16))
                labels.append(d)
                names.append(f"{d}_{name}_{t}")
        return RawSplit(images, np.arange(n) % 10, recs, np.array(labels), names)

    return RawSources("avdigits", split(n_img[0], takes[0], "tr"), split(n_img[1], takes[1], "te"), "test-raw")


BUILD_FINGERPRINT = """
import numpy as np
from common.data.raw import RawSources, RawSplit, speaker_of
from common.data.recipe import build_dataset
rng = np.random.default_rng(5)
def split(n, takes, name):
    recs = [(rng.standard_normal(int(rng.integers(1500, 9000))) * 4000).astype(np.int16)
            for _ in range(10 * takes)]
    return RawSplit(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), np.arange(n) % 10, recs,
                    np.repeat(np.arange(10), takes), [f"{i // takes}_{name}_{i}" for i in range(10 * takes)])
raw = RawSources("avdigits", split(200, 6, "tr"), split(80, 3, "te"), "raw")
print(build_dataset(raw, {"train": 200, "test": 80}, 7).fingerprint)
"""


def test_build_is_bit_identical_with_numpys_wide_simd_loops_switched_off():
    """numpy picks its loops by CPU (AVX-512 here, AVX2 elsewhere); the build must not notice.
    With float32 numpy sums (numerics v1) the default real build hashed differently with and
    without the AVX-512 loops; switching them off here stands in for another machine."""
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    wide = [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]
    if not wide:
        pytest.skip("this CPU runs numpy's baseline loops only: nothing to switch off")
    prints = []
    for disabled in ("", " ".join(wide)):
        env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": disabled}
        out = subprocess.run([sys.executable, "-c", BUILD_FINGERPRINT], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        prints.append(out.stdout.strip())
    assert len(prints[0]) == 64 and prints[0] == prints[1]


def test_exact_row_sums_do_not_depend_on_the_order():
    rng = np.random.default_rng(0)
    values = rng.standard_normal((4, 8000)) * 7
    assert np.array_equal(exact_row_sums(values), exact_row_sums(values[:, ::-1]))
    assert np.allclose(exact_row_sums(values), values.sum(1), rtol=0, atol=1e-9)
    assert np.array_equal(exact_row_sums(np.zeros((2, 3))), np.zeros(2))


def test_build_is_deterministic_in_its_seed():
    raw = small_raw()
    sizes = {"train": 240, "test": 90}
    a, b, c = build_dataset(raw, sizes, 3), build_dataset(raw, sizes, 3), build_dataset(raw, sizes, 4)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert torch.equal(a.train.audio, b.train.audio)
    assert a.train.image.shape == (240, 1, 28, 28) and a.train.audio.shape == (240, 1, 8000)
    assert a.train.image.dtype == torch.float32 and a.train.label.dtype == torch.int64
    assert 0.0 <= a.train.image.min() and a.train.image.max() <= 1.0


def test_pairs_share_their_digit_and_images_do_not_repeat():
    raw = small_raw()
    ds = build_dataset(raw, {"train": 300, "test": 120}, 0)
    for split, pool in ((ds.train, raw.train), (ds.test, raw.test)):
        idx = split.meta["image_index"].numpy()
        assert len(set(idx.tolist())) == len(idx)
        assert np.array_equal(pool.image_labels[idx], split.label.numpy())
        rec_labels = pool.recording_labels[split.meta["recording_index"].numpy()]
        assert np.array_equal(rec_labels, split.label.numpy())


def test_measured_noise_matches_the_drawn_levels():
    raw = small_raw(n_img=(600, 120))
    ds = build_dataset(raw, {"train": 600, "test": 120}, 7)
    split, meta = ds.train, ds.train.meta
    # audio: undo the standardisation, subtract the clean placement, measure the SNR
    for i in range(0, 600, 37):
        rec = raw.train.recordings[int(meta["recording_index"][i])]
        start, length = int(meta["audio_start"][i]), int(meta["audio_length"][i])
        x = rec.astype(np.float32) / 32768
        x = x - x.mean()
        if x.size > AUDIO_LENGTH:
            cut = (x.size - AUDIO_LENGTH) // 2
            x = x[cut:cut + AUDIO_LENGTH]
        clean = np.zeros(AUDIO_LENGTH, np.float32)
        clean[start:start + length] = x
        noisy = split.audio[i, 0].numpy() * float(meta["audio_std"][i]) + float(meta["audio_mean"][i])
        noise = noisy - clean
        measured = 10 * np.log10((x ** 2).mean() / (noise ** 2).mean())
        assert abs(measured - float(meta["audio_snr_db"][i])) < 0.5
    # images: the share of changed pixels follows p (a replacement equal to the original is invisible)
    for i in range(0, 600, 41):
        original = raw.train.images[int(meta["image_index"][i])].astype(np.float32) / 255
        p = float(meta["image_p"][i])
        same_value_chance = np.isin(original, [0.0, 0.5, 1.0]) / 3
        expected = p * (1 - same_value_chance).mean()
        changed = (split.image[i, 0].numpy() != original).mean()
        assert abs(changed - expected) < 4 * np.sqrt(p * (1 - p) / 784) + 0.01


def test_clean_views_keep_the_pairing_and_add_no_noise():
    raw = small_raw()
    noisy = build_dataset(raw, {"train": 200, "test": 60}, 2)
    clean = build_dataset(raw, {"train": 200, "test": 60}, 2, clean_views=True)
    assert torch.equal(noisy.train.meta["image_index"], clean.train.meta["image_index"])
    assert torch.equal(noisy.train.meta["audio_start"], clean.train.meta["audio_start"])
    originals = torch.from_numpy(raw.train.images[clean.train.meta["image_index"].numpy()]).float() / 255
    assert torch.equal(clean.train.image[:, 0], originals)
    assert clean.info["clean_views"] and clean.fingerprint != noisy.fingerprint
    i = 5
    start, length = int(clean.train.meta["audio_start"][i]), int(clean.train.meta["audio_length"][i])
    audio = clean.train.audio[i, 0]
    assert torch.all(audio[:start] == audio[0]) and torch.all(audio[start + length:] == audio[-1])  # silent padding


def test_regimes_levels_and_proportions():
    raw = small_raw(n_img=(3000, 120), takes=(4, 2))
    ds = build_dataset(raw, {"train": 3000, "test": 120}, 1)
    regime, p, snr = (ds.train.meta[k].numpy() for k in ("regime", "image_p", "audio_snr_db"))
    shares = np.bincount(regime, minlength=3) / len(regime)
    assert np.all(np.abs(shares - 1 / 3) < 0.04)
    img_noisy = regime == REGIMES.index("image_noisy")
    aud_noisy = regime == REGIMES.index("audio_noisy")
    assert p[img_noisy].min() >= 0.5 and p[img_noisy].max() <= 0.85
    assert p[~img_noisy].min() >= 0.05 and p[~img_noisy].max() <= 0.30
    assert snr[aud_noisy].min() >= -15 and snr[aud_noisy].max() <= -5
    assert snr[~aud_noisy].min() >= 10 and snr[~aud_noisy].max() <= 25
    audio = ds.train.audio[:, 0]
    assert torch.allclose(audio.mean(1), torch.zeros(3000), atol=1e-4)
    assert torch.allclose(audio.std(1, unbiased=False), torch.ones(3000), atol=1e-3)


# ---------------------------------------------------------------- cache

def test_cache_roundtrip_and_corrupt_cache_is_rebuilt(tmp_path):
    ds = build_dataset(small_raw(), {"train": 100, "test": 50}, 0)
    params = {"x": 1}
    path = str(tmp_path / "c.pt")
    cache_mod.save_cached(path, params, ds)
    back = cache_mod.load_cached(path, params)
    assert back.fingerprint == ds.fingerprint and torch.equal(back.test.audio, ds.test.audio)
    assert cache_mod.load_cached(path, {"x": 2}) is None  # other params: not this dataset
    size = os.path.getsize(path)
    with open(path, "r+b") as f:  # damage tensor bytes in the middle: the file still unpickles
        f.seek(size // 2)
        f.write(b"\x7f" * 64)
    assert cache_mod.load_cached(path, params) is None
    with open(path, "r+b") as f:  # damage the header: the file no longer unpickles
        f.seek(100)
        f.write(b"garbage" * 50)
    assert cache_mod.load_cached(path, params) is None
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("AVDIGITS_CACHE", str(tmp_path / "a"))
    assert cache_mod.cache_dir() == str(tmp_path / "a")
    monkeypatch.delenv("AVDIGITS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_mod.cache_dir() == str(tmp_path / "x" / "avdigits")


# ---------------------------------------------------------------- splits and batches

def test_train_val_split_is_seeded_and_disjoint():
    a_tr, a_va = train_val_split(100, 0.2, 5)
    b_tr, b_va = train_val_split(100, 0.2, 5)
    _, c_va = train_val_split(100, 0.2, 6)
    assert torch.equal(a_va, b_va) and not torch.equal(a_va, c_va)
    assert len(a_va) == 20 and len(a_tr) == 80
    assert sorted(torch.cat([a_tr, a_va]).tolist()) == list(range(100))


def test_batches_cover_everything_once_in_seeded_order():
    idx = torch.arange(10, 35)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    a = list(batch_indices(idx, 8, shuffle=True, generator=g1))
    b = list(batch_indices(idx, 8, shuffle=True, generator=g2))
    assert [len(x) for x in a] == [8, 8, 8, 1]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert sorted(torch.cat(a).tolist()) == idx.tolist()


# ---------------------------------------------------------------- course files

def test_course_loader_crops_pads_and_leaves_test_unlabelled(tmp_path):
    write_course(tmp_path, train_audio_2d=True)
    notes = []
    ds = load_course(str(tmp_path), log=notes.append)
    assert ds.name == "course" and ds.train.audio.shape == (30, 1, 8000) and ds.test.audio.shape == (12, 1, 8000)
    assert ds.train.labeled and not ds.test.labeled
    assert any("centre-cropped 8100 -> 8000" in n for n in notes)
    assert any("zero-padded 7000 -> 8000" in n for n in notes)
    raw = torch.load(tmp_path / "training_audio.pth")
    assert torch.equal(ds.train.audio[:, 0], raw[:, 50:8050])


def test_course_loader_rejects_bad_files(tmp_path):
    write_course(tmp_path)
    torch.save(torch.rand(30, 1, 27, 28), tmp_path / "training_images.pth")
    with pytest.raises(DataError, match=r"training_images.pth has shape \[30, 1, 27, 28\]"):
        load_course(str(tmp_path))
    write_course(tmp_path)
    torch.save({"not": "a tensor"}, tmp_path / "test_audio.pth")
    with pytest.raises(DataError, match="holds a dict"):
        load_course(str(tmp_path))
    write_course(tmp_path)
    torch.save(torch.full((30,), 11), tmp_path / "training_images_labels.pth")
    with pytest.raises(DataError, match="labels outside 0-9|disagree"):
        load_course(str(tmp_path))
    write_course(tmp_path)
    torch.save(torch.randn(29, 1, 8000), tmp_path / "training_audio.pth")
    with pytest.raises(DataError, match="30 images but 29 audio"):
        load_course(str(tmp_path))


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_course_loader_refuses_pickled_code(tmp_path):
    write_course(tmp_path)
    torch.save(Evil(), tmp_path / "test_images.pth")
    with pytest.raises(DataError, match="as plain tensors"):
        load_course(str(tmp_path))


def test_info_reports_course_files(tmp_path):
    write_course(tmp_path / "course")
    out = run_cli(["-m", "common.data", "info", "--data-root", str(tmp_path), "--json"])
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["name"] == "course"
    assert info["splits"]["train"]["n"] == 30 and info["splits"]["train"]["labeled"]
    assert info["splits"]["test"] == {"n": 12, "labeled": False, "class_counts": None}


# ---------------------------------------------------------------- the CLI on bad input

def assert_one_line_error(out, *fragments):
    assert out.returncode != 0
    lines = [l for l in out.stderr.strip().splitlines() if l.strip()]
    assert "Traceback" not in out.stderr, out.stderr
    assert len(lines) == 1 and lines[0].startswith("error:"), out.stderr
    for frag in fragments:
        assert frag in lines[0]


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory):
    return make_avdigits_root(tmp_path_factory.mktemp("fake_root"))


def test_cli_truncated_idx(fake_root, tmp_path):
    import shutil
    root = tmp_path / "root"
    shutil.copytree(fake_root, root)
    f = root / "mnist" / "t10k-labels-idx1-ubyte.gz"
    f.write_bytes(f.read_bytes()[:30])
    out = run_cli(["-m", "common.data", "info", "--data", "avdigits", "--data-root", str(root)])
    assert_one_line_error(out, "t10k-labels-idx1-ubyte.gz")


def test_cli_wav_at_16k(fake_root, tmp_path):
    import shutil
    root = tmp_path / "root"
    shutil.copytree(fake_root, root)
    write_wav(root / "fsdd" / "recordings" / "4_bob_7.wav", np.zeros(500, np.int16), rate=16000)
    out = run_cli(["-m", "common.data", "info", "--data", "avdigits", "--data-root", str(root)])
    assert_one_line_error(out, "4_bob_7.wav", "16000 Hz")


def test_cli_course_file_of_wrong_shape(tmp_path):
    write_course(tmp_path)
    torch.save(torch.randn(12, 2, 8000), tmp_path / "test_audio.pth")
    out = run_cli(["-m", "common.data", "info", "--data", "course", "--data-root", str(tmp_path)])
    assert_one_line_error(out, "test_audio.pth", "[12, 2, 8000]")


@pytest.mark.parametrize("source", ["avdigits", "course"])
def test_cli_empty_data_root(tmp_path, source):
    out = run_cli(["-m", "common.data", "info", "--data", source, "--data-root", str(tmp_path)])
    assert_one_line_error(out, str(tmp_path))


def test_unknown_source_is_refused():
    with pytest.raises(DataError, match="unknown data source"):
        load_dataset("mnist-only")


# ---------------------------------------------------------------- the real data (skipped without it)

# docs/DATASET.md pins it; numerics v2 makes it the same on every machine (see recipe.exact_row_sums)
DEFAULT_BUILD_FINGERPRINT = "55371e8b2578ee6440897a9bf30aa1c8347807394cf974058eaae3b5039d071c"


@needs_real
def test_real_default_build(tmp_path, monkeypatch):
    monkeypatch.setenv("AVDIGITS_CACHE", str(tmp_path / "c1"))
    a = load_dataset("avdigits", REAL_DATA, 0)
    assert a.fingerprint == DEFAULT_BUILD_FINGERPRINT
    assert (len(a.train), len(a.test)) == (17_560, 5_859)
    for split in (a.train, a.test):
        counts = np.bincount(split.label.numpy(), minlength=10)
        assert counts.min() > 0.8 * len(split) / 10 and counts.max() < 1.2 * len(split) / 10
        assert np.all(np.abs(np.bincount(split.meta["regime"].numpy()) / len(split) - 1 / 3) < 0.03)
    monkeypatch.setenv("AVDIGITS_CACHE", str(tmp_path / "c2"))  # a second build from scratch
    b = load_dataset("avdigits", REAL_DATA, 0)
    assert a.fingerprint == b.fingerprint
    c = load_dataset("avdigits", REAL_DATA, 0)  # from the cache this time
    assert c.fingerprint == a.fingerprint and torch.equal(c.test.audio, a.test.audio)


def test_audio_arithmetic_in_row_blocks_gives_the_same_bits_as_on_whole_chunks():
    """add_noise_at_snr and standardise work on blocks of ROW_BLOCK waveforms for speed; every step is
    per row, so they must equal the whole-chunk formulas (numerics v2) bit for bit, partial block,
    silent row and infinite SNR included."""
    from common.data.recipe import ROW_BLOCK

    def whole_chunk_noise(clean, starts, lengths, snr_db, rng):
        positions = np.arange(clean.shape[1])[None, :]
        inside = (positions >= starts[:, None]) & (positions < (starts + lengths)[:, None])
        signal_power = exact_row_sums(clean * clean * inside) / lengths
        ratio = np.array([10.0 ** (float(s) / 10.0) for s in snr_db], dtype=np.float64)
        noise = rng.standard_normal(clean.shape, dtype=np.float32)
        return clean + noise.astype(np.float64) * np.sqrt(signal_power / ratio)[:, None]

    def whole_chunk_standardise(audio):
        n = audio.shape[1]
        mean = exact_row_sums(audio) / n
        centred = audio - mean[:, None]
        std = np.sqrt(exact_row_sums(centred * centred) / n) + 1e-8
        return (centred / std[:, None]).astype(np.float32), mean.astype(np.float32), std.astype(np.float32)

    rng = np.random.default_rng(0)
    n = 2 * ROW_BLOCK + 22
    lengths = rng.integers(2000, AUDIO_LENGTH, n)
    starts = np.array([rng.integers(0, AUDIO_LENGTH - length + 1) for length in lengths])
    clean = np.zeros((n, AUDIO_LENGTH))
    for i in range(n):
        clean[i, starts[i]:starts[i] + lengths[i]] = rng.standard_normal(lengths[i]) * rng.uniform(0.01, 0.5)
    clean[3] = 0.0  # a silent utterance
    snr = rng.uniform(-30, 30, n).astype(np.float32)
    snr[5] = np.inf  # no noise
    blocked = add_noise_at_snr(clean, starts, lengths, snr, np.random.default_rng(1))
    whole = whole_chunk_noise(clean, starts, lengths, snr, np.random.default_rng(1))
    assert np.array_equal(blocked, whole)
    for a, b in zip(standardise(blocked), whole_chunk_standardise(whole)):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_a_held_out_speaker_is_never_heard_in_training_and_is_the_whole_test(tmp_path):
    from common.data.raw import speaker_of
    from common.data.sources import load_raw_sources
    quiet = dict(synthetic_size=200, log=lambda m: None)
    seen = load_dataset("synthetic", **quiet)
    held = load_dataset("synthetic", holdout_speaker="spk1", **quiet)

    def speakers(split):
        return {speaker_of(split.recording_names[i]) for i in split.meta["recording_index"].tolist()}
    assert "spk1" in speakers(seen.train) and "spk1" in speakers(seen.test)
    assert "spk1" not in speakers(held.train) and speakers(held.test) == {"spk1"}
    # the speaker's training takes are test recordings too: all of that voice is unheard
    raw = load_raw_sources("synthetic", synthetic_size=200, holdout_speaker="spk1")
    everything = load_raw_sources("synthetic", synthetic_size=200)
    assert sorted(raw.test.recording_names) == sorted(n for s in (everything.train, everything.test)
                                                      for n in s.recording_names if speaker_of(n) == "spk1")
    assert held.info["holdout_speaker"] == "spk1" and "holdout_speaker" not in seen.info
    assert held.fingerprint != seen.fingerprint
    assert load_dataset("synthetic", **quiet).fingerprint == seen.fingerprint  # the default build is untouched
    with pytest.raises(DataError, match=r"--holdout-speaker nobody: no recordings of that speaker .*spk0, spk1"):
        load_dataset("synthetic", holdout_speaker="nobody", **quiet)
    write_course(tmp_path)
    with pytest.raises(DataError, match="--holdout-speaker needs a source built by the recipe"):
        load_dataset("course", data_root=str(tmp_path), holdout_speaker="spk1", log=lambda m: None)


def test_an_empty_wav_says_so(tmp_path):
    (tmp_path / "3_ann_0.wav").write_bytes(b"")
    with pytest.raises(Exception, match=r"3_ann_0.wav: an empty file \(0 bytes\)"):
        read_wav(str(tmp_path / "3_ann_0.wav"))


def test_a_stray_wav_among_the_recordings_is_named_once(tmp_path, capsys):
    for name in ("3_ann_0.wav", "3_ann_5.wav", "x_y_z.wav", "notes.txt"):
        write_wav(tmp_path / name, np.ones(100, np.int16))
    assert [e[0] for e in list_recordings(str(tmp_path))] == ["3_ann_0", "3_ann_5"]
    assert list_recordings(str(tmp_path))  # a second listing does not warn again
    err = capsys.readouterr().err
    assert err.count("x_y_z.wav") == 1 and "not named digit_speaker_take.wav" in err and "notes.txt" not in err


def test_a_stray_wav_is_named_by_the_data_command(tmp_path):
    root = make_avdigits_root(tmp_path / "data")
    write_wav(root / "fsdd" / "recordings" / "x_y_z.wav", np.ones(100, np.int16))
    out = run_cli(["-m", "common.data", "info", "--data", "avdigits", "--data-root", str(root)],
                  env={"AVDIGITS_CACHE": str(tmp_path / "cache")})
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("x_y_z.wav") == 1


def test_a_validation_speaker_validates_alone_and_is_never_heard_in_training():
    """--val-speaker: a fixed share of the training split is the validation set, every one of its pairs
    a recording of that speaker and no training pair one of theirs; the test split is the plain fold's."""
    quiet = {"synthetic_size": 400, "log": lambda m: None}
    nested = load_dataset("synthetic", holdout_speaker="spk1", val_speaker="spk2", **quiet)
    plain = load_dataset("synthetic", holdout_speaker="spk1", **quiet)
    train = nested.train
    speakers = [speaker_of(train.recording_names[i]) for i in train.meta["recording_index"].tolist()]
    val = train.meta["val"].tolist()
    assert sum(val) == round(0.2 * len(train))
    assert {s for s, v in zip(speakers, val) if v} == {"spk2"}
    assert "spk2" not in {s for s, v in zip(speakers, val) if not v} and "spk1" not in speakers
    assert torch.equal(nested.test.audio, plain.test.audio) and torch.equal(nested.test.image, plain.test.image)
    assert nested.info["val_speaker"] == "spk2" and "val_speaker" not in plain.info
    assert torch.equal(load_dataset("synthetic", holdout_speaker="spk1", val_speaker="spk2", **quiet).train.audio,
                       train.audio)  # seeded
    with pytest.raises(DataError, match="--val-speaker needs --holdout-speaker"):
        load_dataset("synthetic", val_speaker="spk2", **quiet)
    with pytest.raises(DataError, match="is the held-out test speaker"):
        load_dataset("synthetic", holdout_speaker="spk1", val_speaker="spk1", **quiet)


def test_the_training_pairs_draw_again_as_the_build_drew_them():
    """drawn_train_pairs (combine.py --gate confidence re-noises the validation pairs from it): the same
    images, recordings and labels, row by row, as the training split a build made, nested or not."""
    from common.data.recipe import drawn_train_pairs
    from common.data.sources import load_raw_sources
    for fold in ({}, {"holdout_speaker": "spk1", "val_speaker": "spk2"}):
        built = load_dataset("synthetic", synthetic_size=200, data_seed=3, log=lambda m: None, **fold).train
        raw = load_raw_sources("synthetic", synthetic_size=200, data_seed=3, holdout_speaker=fold.get("holdout_speaker"))
        pairs = drawn_train_pairs(raw.train, len(built), 3, fold.get("val_speaker"))
        for key, meta in (("image_index", "image_index"), ("recording_index", "recording_index"), ("label", None)):
            expected = built.label if meta is None else built.meta[meta]
            assert np.array_equal(pairs[key], expected.numpy()), (fold, key)
        assert ("val" in pairs) == bool(fold) and (not fold or np.array_equal(pairs["val"], built.meta["val"].numpy()))


def test_the_validation_split_of_a_build_is_its_validation_speaker_else_seeded():
    """validation_split, which the classifiers and the raw floors both use: a nested build's own
    validation pairs, every other build the seeded split of train_val_split."""
    quiet = {"synthetic_size": 200, "log": lambda m: None}
    nested = load_dataset("synthetic", holdout_speaker="spk1", val_speaker="spk2", **quiet).train
    train_idx, val_idx = validation_split(nested, len(nested), 0.1, 0)
    assert val_idx.tolist() == torch.nonzero(nested.meta["val"]).flatten().tolist()
    assert sorted(train_idx.tolist() + val_idx.tolist()) == list(range(len(nested)))
    plain = load_dataset("synthetic", holdout_speaker="spk1", **quiet).train
    assert all(torch.equal(a, b) for a, b in zip(validation_split(plain, 50, 0.2, 3), train_val_split(50, 0.2, 3)))


def test_a_validation_speaker_run_validates_on_the_fixed_pairs(tmp_path):
    runs = tmp_path / "runs"
    out = run_script(["train_image.py", *SMALL_SYNTHETIC, "--holdout-speaker", "spk1", "--val-speaker", "spk2",
                      "--max-epochs", "1", "--batch-size", "16", "--num-threads", "1", "--runs-dir", str(runs),
                      "--name", "nested"])
    assert out.returncode == 0, out.stderr
    split = json.loads((runs / "nested" / "split_indices.json").read_text())
    data = load_dataset("synthetic", synthetic_size=200, holdout_speaker="spk1", val_speaker="spk2",
                        log=lambda m: None)
    assert split["val"] == torch.nonzero(data.train.meta["val"]).flatten().tolist()
    assert not set(split["val"]) & set(split["train"])
    predictions = (runs / "nested" / "predictions_test.csv").read_text().splitlines()
    assert predictions[0] == "id,digit,label,recording"  # each test pair's recording, for intervals over them
    assert {row.split(",")[3].split("_")[1] for row in predictions[1:]} == {"spk1"}
    out = run_script(["train_image.py", *SMALL_SYNTHETIC, "--holdout-speaker", "spk1", "--val-speaker", "spk2",
                      "--val-fraction", "0.3", "--runs-dir", str(runs), "--name", "other"])
    assert out.returncode == 2 and "fixes its validation share" in out.stderr


def test_the_recordings_table_names_each_test_rows_recording(tmp_path):
    """`python -m common.data recordings` writes <fingerprint>.csv with the recording of each test row,
    as the build pairs them; the report reads it for runs whose predictions lack the column."""
    out = run_cli(["-m", "common.data", "recordings", *SMALL_SYNTHETIC, "--out", str(tmp_path)])
    assert out.returncode == 0, out.stderr
    data = load_dataset("synthetic", synthetic_size=200, log=lambda m: None)
    table = (tmp_path / f"{data.fingerprint[:12]}.csv").read_text().splitlines()
    names = [data.test.recording_names[i] for i in data.test.meta["recording_index"].tolist()]
    assert table[0] == "id,recording" and table[1:] == [f"{i},{n}" for i, n in enumerate(names)]


@pytest.mark.skipif(not REAL_DATA, reason="set AVDIGITS_DATA to the raw data root to run")
@pytest.mark.slow  # builds the real dataset
def test_the_committed_recordings_table_matches_a_rebuilt_test_split():
    data = load_dataset("avdigits", data_root=REAL_DATA, log=lambda m: None)
    table = os.path.join(ROOT, "results", "recordings", f"{data.fingerprint[:12]}.csv")
    with open(table) as f:
        rows = f.read().splitlines()[1:]
    names = [data.test.recording_names[i] for i in data.test.meta["recording_index"].tolist()]
    assert rows == [f"{i},{n}" for i, n in enumerate(names)] and len(rows) == 5859


def test_a_cache_whose_metadata_was_changed_is_rebuilt_not_trusted(tmp_path):
    """The fingerprint covers images, audio and labels; the regimes, noise levels and indices are
    checked by a digest of their own, so a cache with the test regimes zeroed is not loaded."""
    ds = build_dataset(small_raw(), {"train": 100, "test": 50}, 0)
    path = str(tmp_path / "c.pt")
    cache_mod.save_cached(path, {"x": 1}, ds)
    state = torch.load(path, weights_only=True)
    state["test"]["meta"]["regime"] = torch.zeros_like(state["test"]["meta"]["regime"])
    torch.save(state, path)
    assert cache_mod.load_cached(path, {"x": 1}) is None
    cache_mod.save_cached(path, {"x": 1}, ds)
    assert cache_mod.load_cached(path, {"x": 1}).fingerprint == ds.fingerprint
