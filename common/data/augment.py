"""Training-time augmentation of the views: ViewAugment (--augment views) for contrastive
pre-training, speed_perturb (--speed-perturb) for the classifiers' waveforms.

ViewAugment: more noise and small shifts on the noisy views.

The course's data holds no clean originals, so the augmentation works on the views a run is given.
Each view of each pair gets its own, independent draw at every step:

- image: with probability `noise_prob`, each pixel is replaced with probability p ~ U(0, image_p)
  by 0, 0.5 or 1 (the recipe's own corruption, at a milder level); then a shift of up to
  `image_shift` pixels along each axis (circular, so no value is made up);
- audio: with probability `noise_prob`, white Gaussian noise at an SNR ~ U(audio_snr_db) measured
  against the waveform's own power; then a circular shift of up to `audio_shift` samples; then each
  waveform is standardised again (zero mean, unit variance), as the recipe leaves it.

Why: each training pair has one noise regime, and both views show their noise level plainly, so
the regime alone lowers the contrastive loss (a shortcut that says nothing about the digit), and
the fixed pairs can be memorised. Independent extra noise per view blurs the first and stops the
second. Every draw comes from torch's global generator, which --seed seeds and last.pt saves, so a
run and its resume draw the same augmentations. Shapes and dtypes are kept; with every level at 0
(no noise, no shift) a view comes back unchanged.
"""
from dataclasses import dataclass

import numpy as np
import torch

from ..facts import AUGMENTATIONS, SPEED_STEP  # noqa: F401 (the flags' choices)

PIXEL_VALUES = (0.0, 0.5, 1.0)


@dataclass(frozen=True)
class ViewAugment:
    noise_prob: float = 0.5
    image_p: float = 0.3
    image_shift: int = 2
    audio_snr_db: tuple = (0.0, 20.0)
    audio_shift: int = 800

    def images(self, x):
        """x: [B, 1, H, W] in [0, 1] -> the same shape and dtype."""
        batch = x.shape[0]
        if self.noise_prob > 0 and self.image_p > 0:
            noisy = torch.rand(batch) < self.noise_prob
            p = torch.rand(batch) * self.image_p * noisy  # 0 for the pairs left alone
            replace = torch.rand(x.shape) < p.view(-1, 1, 1, 1)
            values = torch.tensor(PIXEL_VALUES, dtype=x.dtype)[torch.randint(0, len(PIXEL_VALUES), x.shape)]
            x = torch.where(replace, values, x)
        if self.image_shift > 0:
            shifts = torch.randint(-self.image_shift, self.image_shift + 1, (batch, 2))
            x = torch.stack([torch.roll(x[i], (int(dy), int(dx)), dims=(-2, -1)) for i, (dy, dx) in
                             enumerate(shifts)])
        return x

    def audio(self, x):
        """x: [B, 1, T] standardised waveforms -> the same shape and dtype."""
        batch = x.shape[0]
        changed = False
        if self.noise_prob > 0:
            noisy = torch.rand(batch) < self.noise_prob
            lo, hi = self.audio_snr_db
            snr_db = lo + (hi - lo) * torch.rand(batch)
            power = x.float().pow(2).mean(dim=(1, 2))
            noise_std = torch.sqrt(power / 10.0 ** (snr_db / 10.0)) * noisy
            x = x + (torch.randn(x.shape) * noise_std.view(-1, 1, 1)).to(x.dtype)
            changed = True
        if self.audio_shift > 0:
            shifts = torch.randint(-self.audio_shift, self.audio_shift + 1, (batch,))
            x = torch.stack([torch.roll(x[i], int(s), dims=-1) for i, s in enumerate(shifts)])
        if changed:  # standardised again, as the recipe leaves every waveform
            mean = x.mean(dim=-1, keepdim=True)
            x = (x - mean) / (x - mean).pow(2).mean(dim=-1, keepdim=True).sqrt().add(1e-8)
        return x


OFF = ViewAugment(noise_prob=0.0, image_p=0.0, image_shift=0, audio_snr_db=(0.0, 0.0), audio_shift=0)


def build_augment(name):
    """The augmentation of --augment: None for 'none', else the ViewAugment of 'views'."""
    if name == "none":
        return None
    if name == "views":
        return ViewAugment()
    raise ValueError(f"unknown augmentation {name!r}; valid: {', '.join(AUGMENTATIONS)}")




def speed_perturb(x, max_change):
    """x: [B, 1, T] standardised waveforms -> the same shape and dtype, each played at its own speed.

    Each waveform gets a factor f drawn uniformly from 1 - max_change ... 1 + max_change in steps of
    SPEED_STEP (torch's global generator, so --seed and last.pt fix it) and is resampled by 1/f with
    scipy's polyphase resampler (as a recording sped up f-fold: pitch and tempo change together, as
    between two voices); then fitted back to T samples (centre-cropped when longer, wrapped around when
    shorter: the ends hold the recipe's noise floor, not the word) and standardised again (zero mean,
    unit variance, in float64). max_change 0: x itself, and nothing is drawn."""
    if max_change <= 0:
        return x
    from scipy.signal import resample_poly

    batch, length = x.shape[0], x.shape[-1]
    base, span = round(1 / SPEED_STEP), round(max_change / SPEED_STEP)
    downs = (base + torch.randint(-span, span + 1, (batch,))).numpy()  # f = down / base
    waves = x.reshape(batch, length).double().numpy()
    out = np.empty_like(waves)
    for down in np.unique(downs):  # one resampler call per factor in the batch
        rows = downs == down
        y = resample_poly(waves[rows], base, int(down), axis=1)
        if y.shape[1] >= length:
            start = (y.shape[1] - length) // 2
            y = y[:, start:start + length]
        else:
            left = (length - y.shape[1]) // 2
            y = np.pad(y, ((0, 0), (left, length - y.shape[1] - left)), mode="wrap")
        out[rows] = y
    out -= out.mean(axis=1, keepdims=True)  # standardised again, as the recipe leaves every waveform
    out /= np.sqrt((out * out).mean(axis=1, keepdims=True)) + 1e-8
    return torch.from_numpy(out).to(x.dtype).reshape(x.shape)
