"""common/nets/mel.py: the log-mel front-end (filterbank by hand, band layout, --mel-top-db) and its runs end to end."""
import json
import math

import pytest
import torch

from common.nets.mel import LogMel, MelAudioFeaturizer, hz_to_mel, mel_band_edges, mel_filterbank
from common.nets.models import build_from_config

from conftest import train_on_course


def test_mel_filterbank_on_a_small_case_computed_by_hand():
    # 2 bands over 0-4 kHz: edges at 0, M/3, 2M/3, M in mel, M = 2595 log10(1 + 4000/700) = 2146.06;
    # back in Hz, 700 (10^(M/3/2595) - 1) = 620.58 and 700 (10^(2M/3/2595) - 1) = 1791.33.
    # With n_fft = 8 at 8 kHz the bins sit at 0, 1, 2, 3 and 4 kHz: band 0 rises over 0-620.58 Hz and
    # falls to 1791.33 Hz, so at 1 kHz it is (1791.33 - 1000) / (1791.33 - 620.58) = 0.6759; band 1 rises
    # from 620.58 Hz: (1000 - 620.58) / 1170.75 = 0.3241 at 1 kHz, then falls to 4 kHz:
    # 2000 / 2208.67 = 0.9055 at 2 kHz and 1000 / 2208.67 = 0.4528 at 3 kHz.
    edges = mel_band_edges(2, 0.0, 4000.0)
    assert edges.tolist() == pytest.approx([0.0, 620.58, 1791.33, 4000.0], abs=0.01)
    fb = mel_filterbank(n_mels=2, n_fft=8, sample_rate=8000)
    expected = torch.tensor([[0.0, 0.0], [0.6759, 0.3241], [0.0, 0.9055], [0.0, 0.4528], [0.0, 0.0]])
    torch.testing.assert_close(fb, expected, atol=1e-4, rtol=0)


def test_mel_bands_are_equally_spaced_in_mel_non_negative_and_overlap_their_neighbours():
    edges = mel_band_edges()
    steps = [hz_to_mel(float(b)) - hz_to_mel(float(a)) for a, b in zip(edges[:-1], edges[1:])]
    assert max(steps) - min(steps) < 1e-6 and len(edges) == 66
    fb = mel_filterbank()  # [257 bins, 64 bands]
    assert fb.shape == (257, 64) and (fb >= 0).all() and fb.max() <= 1.0
    assert ((fb > 0).sum(0) >= 2).all()  # no empty band, even the narrowest low ones
    for m in range(63):  # each band shares bins with the next, and peaks below it
        assert ((fb[:, m] > 0) & (fb[:, m + 1] > 0)).any(), m
        assert fb[:, m].argmax() < fb[:, m + 1].argmax()


@pytest.mark.parametrize("signal", ["silence", "clipping noise", "pure tone"])
def test_mel_front_end_gives_finite_features(signal):
    torch.manual_seed(0)
    t = torch.arange(8000) / 8000
    x = {"silence": torch.zeros(4, 1, 8000),
         "clipping noise": torch.randn(4, 1, 8000).mul(100).clamp(-1, 1) * 1e4,
         "pure tone": torch.sin(2 * math.pi * 440 * t).expand(4, 1, 8000)}[signal]
    featurizer = MelAudioFeaturizer().eval()
    with torch.no_grad():
        out = featurizer(x)
        logmel = LogMel()(x)
    assert out.shape == (4, 128) and torch.isfinite(out).all()
    assert logmel.shape == (4, 1, 64, 101) and torch.isfinite(logmel).all()
    if signal == "pure tone":  # 440 Hz: the loudest band is the one whose centre is nearest
        centres = mel_band_edges()[1:-1]
        assert logmel[0, 0].mean(1).argmax() == (centres - 440).abs().argmin()


def test_mel_top_db_floors_the_map_below_its_loudest_bin_and_is_off_by_default():
    """A tone in one second of exact zeros (a clean recording's padding): with --mel-top-db 50 no bin
    of the log-mel map lies more than 50 dB below its loudest, so the padding sits at that floor, not
    at log(1e-6); without it the map is as before; a noisy second above the floor is unchanged."""
    torch.manual_seed(0)
    t = torch.arange(2000) / 8000
    x = torch.zeros(2, 1, 8000)
    x[:, 0, 3000:5000] = torch.sin(2 * math.pi * 440 * t)
    noisy = x + 0.3 * torch.randn(2, 1, 8000)
    floor = 50 * math.log(10) / 10  # 50 dB of power, in the map's natural-log units

    plain, floored = LogMel(), LogMel(top_db=50.0)
    with torch.no_grad():
        mel = torch.matmul(torch.stft(x.flatten(1), 512, 80, 200, plain.window, center=True, pad_mode="constant",
                                      return_complex=True).abs().square().transpose(1, 2),
                           plain.filterbank).transpose(1, 2)
        logmel = torch.log(mel + 1e-6)
        expected = torch.maximum(logmel, logmel.amax(dim=(1, 2), keepdim=True) - floor)
        expected = (expected - expected.mean(dim=(1, 2), keepdim=True)) / (expected.std(dim=(1, 2), keepdim=True)
                                                                              + 1e-5)
        assert torch.allclose(floored(x)[:, 0], expected, atol=1e-5)
        assert (logmel.amax(dim=(1, 2)) - logmel.amin(dim=(1, 2)) > 1.5 * floor).all()  # the cliff it removes: ~96 dB
        assert torch.equal(LogMel(top_db=None)(x), plain(x))
        assert torch.allclose(LogMel(top_db=200.0)(noisy), plain(noisy))  # a floor below every bin binds nowhere


def test_mel_runs_end_to_end_and_refuse_mismatched_flags(labelled_course, tmp_path):
    out = train_on_course("train_audio.py", labelled_course, tmp_path, "--audio-frontend", "mel",
                          "--mel-channels", "8", "16",
                          "--name", "mel")
    assert out.returncode == 0, out.stderr
    config = json.loads((tmp_path / "mel/config.json").read_text())
    assert config["args"]["audio_frontend"] == "mel" and config["args"]["mel_channels"] == [8, 16]
    state = torch.load(tmp_path / "mel/checkpoints/best.pt", weights_only=True)["model"]
    assert state["featurizer.conv.0.weight"].shape == (8, 1, 3, 3)
    model = build_from_config(config)
    model.load_state_dict(state)  # evaluate.py rebuilds the same network from config.json
    bad = train_on_course("train_audio.py", labelled_course, tmp_path, "--mel-channels", "8", "16", "--name", "bad")
    assert bad.returncode == 2 and bad.stderr.strip().endswith("--mel-channels needs --audio-frontend mel")
    bad = train_on_course("train_audio.py", labelled_course, tmp_path, "--mel-top-db", "50", "--name", "bad")
    assert bad.returncode == 2 and bad.stderr.strip().endswith("--mel-top-db needs --audio-frontend mel")
    floored = train_on_course("train_multimodal.py", labelled_course, tmp_path, "--audio-frontend", "mel",
                              "--mel-top-db", "50", "--name", "floored")
    assert floored.returncode == 0, floored.stderr
    config = json.loads((tmp_path / "floored/config.json").read_text())
    assert config["args"]["mel_top_db"] == 50.0
    assert build_from_config(config).audio_featurizer.logmel.floor_nats == pytest.approx(50 * math.log(10) / 10)
    raw = train_on_course("train_multimodal.py", labelled_course, tmp_path,
                          "--init-from", str(tmp_path / "mel/checkpoints/best.pt"),
                          "--name", "raw-from-mel")  # a mel featurizer does not fit the raw front-end
    assert raw.returncode == 2 and raw.stderr.strip().splitlines()[-1].startswith("error: --init-from ")
    assert "audio featurizer: checkpoint lacks conv.2" in raw.stderr and "Traceback" not in raw.stderr
