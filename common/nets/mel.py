"""The log-mel audio front-end (--audio-frontend mel): an alternative to the exam's raw-waveform Conv1Net.

The model computes the features itself, from the same standardised 8 kHz waveform the raw
front-end reads, so the data, the recipe and the noise stay exactly as they are:

- torch.stft with a 25 ms Hann window (200 samples), a 10 ms hop (80 samples), centred frames
  (101 frames per second) and 512 FFT points (the window zero-padded, so the lowest mel bands,
  about 20 Hz apart, still span two or more FFT bins);
- the power spectrum through 64 triangular mel bands between 0 Hz and 4 kHz (the HTK mel scale,
  band centres equally spaced in mel; built here, since torchaudio has no build for torch 2.13);
- log(mel power + 1e-6), then each utterance's log-mel map standardised to zero mean and unit
  variance (the waveforms are standardised already, so loudness carries nothing; silence maps
  to zeros); with --mel-top-db DB (off by default), first floored at DB below the map's loudest
  bin, as librosa's power_to_db(top_db=...) does: the exact zeros of a clean recording's padding
  (log 1e-6, about 106 dB below the speech here, where the mildest training noise, 25 dB SNR,
  leaves its quietest 5% of bins about 53 dB below) then sit where a mild noise floor would;
- a small 2-D CNN in the exam's Conv2Net shape: conv3x3(1->c1)-ReLU-pool2,
  conv3x3(c1->c2)-ReLU-pool2, dropout, fc(c2 * 16 * 25 -> 128)-ReLU, so the output is the same
  128-d feature and every fusion works unchanged.

The spectrogram is computed in fp32 even under bf16 autocast (the FFT has no bf16 kernel on the
CPU and the log needs the range); the CNN on top runs at the run's precision.
"""
import math

import torch
from torch import nn

from .featurizers import FEATURE_DIM
from .layers import Dropout, MaxPool2x2

SAMPLE_RATE = 8000
N_MELS = 64
WIN_LENGTH = 200  # 25 ms at 8 kHz
HOP_LENGTH = 80  # 10 ms
N_FFT = 512
LOG_FLOOR = 1e-6
from ..facts import MEL_CHANNELS as DEFAULT_CHANNELS  # the exam's Conv2Net widths


def hz_to_mel(f):
    """HTK mel scale: 2595 log10(1 + f / 700)."""
    return 2595.0 * math.log10(1.0 + f / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_band_edges(n_mels=N_MELS, f_min=0.0, f_max=SAMPLE_RATE / 2):
    """n_mels + 2 frequencies (Hz), equally spaced in mel: band m rises from edge m, peaks at edge
    m + 1 (its centre) and falls to zero at edge m + 2."""
    lo, hi = hz_to_mel(f_min), hz_to_mel(f_max)
    return torch.tensor([mel_to_hz(lo + (hi - lo) * i / (n_mels + 1)) for i in range(n_mels + 2)],
                        dtype=torch.float64)


def mel_filterbank(n_mels=N_MELS, n_fft=N_FFT, sample_rate=SAMPLE_RATE, f_min=0.0, f_max=None):
    """[n_fft // 2 + 1, n_mels]: the weight of each FFT bin in each band, triangles of peak 1.

    Each triangle is evaluated at the bins' centre frequencies k * sample_rate / n_fft.
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    edges = mel_band_edges(n_mels, f_min, f_max)
    bins = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sample_rate / n_fft
    left, centre, right = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins[:, None] - left) / (centre - left)
    falling = (right - bins[:, None]) / (right - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0).float()


class LogMel(nn.Module):
    """[B, 1, 8000] waveforms -> [B, 1, 64, 101] standardised log-mel maps (fp32, no parameters)."""

    def __init__(self, n_mels=N_MELS, top_db=None):
        super().__init__()
        self.floor_nats = None if top_db is None else top_db * math.log(10.0) / 10.0  # dB of power -> ln units
        # buffers move with .to(device) but are not saved: they are a function of the constants above
        self.register_buffer("window", torch.hann_window(WIN_LENGTH), persistent=False)
        self.register_buffer("filterbank", mel_filterbank(n_mels), persistent=False)

    def forward(self, waveform):
        with torch.autocast(waveform.device.type, enabled=False):
            x = waveform.float().flatten(1)  # [B, 8000]
            spec = torch.stft(x, N_FFT, HOP_LENGTH, WIN_LENGTH, self.window, center=True, pad_mode="constant",
                              return_complex=True)  # [B, 257, 101]
            power = spec.real.square() + spec.imag.square()
            mel = torch.matmul(power.transpose(1, 2), self.filterbank).transpose(1, 2)  # [B, 64, 101]
            logmel = torch.log(mel + LOG_FLOOR)
            if self.floor_nats is not None:
                logmel = torch.maximum(logmel, logmel.amax(dim=(1, 2), keepdim=True) - self.floor_nats)
            mean = logmel.mean(dim=(1, 2), keepdim=True)
            std = logmel.std(dim=(1, 2), keepdim=True)
            return ((logmel - mean) / (std + 1e-5)).unsqueeze(1)


class MelAudioFeaturizer(nn.Module):
    """LogMel, then conv3x3(1->c1)-ReLU-pool2, conv3x3(c1->c2)-ReLU-pool2, dropout, fc(c2*16*25 -> 128)-ReLU.

    Same interface as models.AudioFeaturizer: forward -> [B, 128]; feature_map -> [B, c2 * 16, 25],
    the conv map as 25 time steps of c2 * 16 channels (each step's channels across the 16 pooled
    mel bands), which is the token layout attention-tokens fusion reads (token_options).
    """

    def __init__(self, dropout=0.5, out_dim=FEATURE_DIM, channels=DEFAULT_CHANNELS, top_db=None):
        super().__init__()
        c1, c2 = channels
        self.logmel = LogMel(top_db=top_db)
        self.conv = nn.Sequential(
            nn.Conv2d(1, c1, kernel_size=3, padding=1), nn.ReLU(), MaxPool2x2(),
            nn.Conv2d(c1, c2, kernel_size=3, padding=1), nn.ReLU(), MaxPool2x2(),
        )
        bands, frames = N_MELS // 4, (SAMPLE_RATE // HOP_LENGTH + 1) // 4  # 64 -> 16, 101 -> 25
        self.map_channels = c2 * bands
        self.token_options = {"aud_tokens": frames, "aud_pool": 1}
        self.dropout = Dropout(dropout)
        self.fc = nn.Linear(c2 * bands * frames, out_dim)
        self.out_dim = out_dim

    def feature_map(self, x):
        """[B,1,8000] -> [B, c2 * 16, 25]."""
        return self.conv(self.logmel(x)).flatten(1, 2)

    def head(self, fmap):
        return torch.relu(self.fc(self.dropout(fmap.flatten(1))))

    def forward(self, x):
        return self.head(self.feature_map(x))
