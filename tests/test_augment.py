"""common/data/augment.py: view augmentation keeps shapes and dtypes, is the identity at level 0, draws from
torch's global generator (so --seed and last.pt govern it), and changes each pair independently; the
speed perturbation moves a tone's pitch by the factor it drew. (Its exact resume: test_lifecycle.)"""
import json
import math

import torch

from common.data.augment import OFF, SPEED_STEP, ViewAugment, build_augment, speed_perturb

from conftest import train_on_course


def views(batch=16):
    g = torch.Generator().manual_seed(0)
    image = (torch.rand(batch, 1, 28, 28, generator=g) > 0.8).float()
    audio = torch.randn(batch, 1, 8000, generator=g)
    return image, (audio - audio.mean(-1, keepdim=True)) / audio.std(-1, keepdim=True, correction=0)


def test_level_zero_leaves_both_views_unchanged():
    image, audio = views()
    for dtype in (torch.float32, torch.bfloat16):
        assert torch.equal(OFF.images(image.to(dtype)), image.to(dtype))
        assert torch.equal(OFF.audio(audio.to(dtype)), audio.to(dtype))


def test_shapes_and_dtypes_are_kept_and_audio_stays_standardised():
    image, audio = views()
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(1)
        out_image, out_audio = ViewAugment().images(image.to(dtype)), ViewAugment().audio(audio.to(dtype))
        assert out_image.shape == image.shape and out_image.dtype == dtype
        assert out_audio.shape == audio.shape and out_audio.dtype == dtype
    torch.manual_seed(1)
    out = ViewAugment().audio(audio)
    assert torch.allclose(out.mean(-1), torch.zeros(16, 1), atol=1e-5)
    assert torch.allclose(out.pow(2).mean(-1), torch.ones(16, 1), atol=1e-4)
    torch.manual_seed(1)
    out = ViewAugment().images(image)
    assert set(out.unique().tolist()) <= {0.0, 0.5, 1.0}  # the recipe's replacement values, nothing else


def test_the_draws_come_from_the_global_generator_and_differ_per_pair():
    image, audio = views()
    aug = ViewAugment(noise_prob=1.0)
    torch.manual_seed(3)
    a = aug.images(image), aug.audio(audio)
    torch.manual_seed(3)
    b = aug.images(image), aug.audio(audio)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])  # same seed, same augmentation
    torch.manual_seed(4)
    c = aug.images(image)
    assert not torch.equal(a[0], c)
    # the same image in every row of a batch comes out differently in each row
    same = image[:1].expand(8, -1, -1, -1).contiguous()
    torch.manual_seed(5)
    out = aug.images(same)
    assert len({tuple(row.flatten().tolist()) for row in out}) == 8


def test_shift_only_moves_pixels_and_samples_around():
    image, audio = views(4)
    torch.manual_seed(0)
    shifted = ViewAugment(noise_prob=0.0, image_shift=2, audio_shift=800).images(image)
    for a, b in zip(image, shifted):  # a circular shift keeps every value
        assert torch.equal(a.flatten().sort().values, b.flatten().sort().values)
    torch.manual_seed(0)
    moved = ViewAugment(noise_prob=0.0, image_shift=0, audio_shift=800).audio(audio)
    for a, b in zip(audio, moved):
        assert torch.equal(a.sort().values, b.sort().values)


def test_build_augment_names():
    assert build_augment("none") is None and isinstance(build_augment("views"), ViewAugment)


def test_speed_perturbation_at_zero_is_the_identity_and_draws_nothing():
    _, audio = views()
    torch.manual_seed(3)
    state = torch.get_rng_state()
    assert speed_perturb(audio, 0.0) is audio
    assert torch.equal(torch.get_rng_state(), state)


def test_speed_perturbation_moves_a_tone_by_the_factor_it_drew_and_keeps_shape_dtype_and_standardisation():
    """A 500 Hz tone in the middle of a noise-free second: played f times faster, its peak moves to
    500 f Hz; the factors are the ones torch's generator gives after the same seed."""
    t = torch.arange(8000) / 8000.0
    tone = torch.sin(2 * math.pi * 500 * t) * (torch.abs(t - 0.5) < 0.3)
    batch = tone.repeat(32, 1, 1)
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(5)
        out = speed_perturb(batch.to(dtype), 0.1)
        assert out.shape == batch.shape and out.dtype == dtype
    torch.manual_seed(5)
    base, span = round(1 / SPEED_STEP), round(0.1 / SPEED_STEP)
    factors = (base + torch.randint(-span, span + 1, (32,))) / base
    assert len(set(factors.tolist())) == 2 * span + 1  # the batch holds every speed of the range
    torch.manual_seed(5)
    out = speed_perturb(batch, 0.1)
    peaks = torch.fft.rfft(out[:, 0].double()).abs().argmax(dim=1).double()  # 1 Hz bins at 8000 samples
    assert torch.allclose(peaks, 500 * factors.double(), atol=1.5)
    assert torch.allclose(out.mean(-1), torch.zeros(32, 1), atol=1e-5)
    assert torch.allclose(out.std(-1, correction=0), torch.ones(32, 1), atol=1e-4)


def test_the_flag_changes_training_is_recorded_and_is_bounded(labelled_course, tmp_path):
    plain = train_on_course("train_audio.py", labelled_course, tmp_path, name="plain")
    faster = train_on_course("train_audio.py", labelled_course, tmp_path, "--speed-perturb", "0.15", name="sped")
    assert plain.returncode == 0 and faster.returncode == 0, faster.stderr
    config = json.loads((tmp_path / "sped/config.json").read_text())["args"]
    assert config["speed_perturb"] == 0.15
    val_loss = [json.loads((tmp_path / n / "metrics.json").read_text())["val"]["loss"] for n in ("plain", "sped")]
    assert val_loss[0] != val_loss[1]
    bad = train_on_course("train_multimodal.py", labelled_course, tmp_path, "--speed-perturb", "0.5", name="bad")
    assert bad.returncode == 2 and "invalid choice: 0.5" in bad.stderr and not (tmp_path / "bad").exists()
    bad = train_on_course("train_audio.py", labelled_course, tmp_path, "--speed-perturb", "0.12", name="bad")
    assert bad.returncode == 2 and "invalid choice: 0.12" in bad.stderr  # not a multiple of the 0.05 step
