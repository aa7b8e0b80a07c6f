"""common/training/calibration.py (--calibrate): late fusion's per-head temperatures."""
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from common.data import Split
from common.nets.models import LateFusionNet, build_from_config
from common.training.calibration import fit_confidence_gate, fit_view_temperatures

from conftest import SMALL_SYNTHETIC, run_script


class FixedHeads(nn.Module):
    """Two 'heads' whose logits are the inputs themselves."""

    def __init__(self):
        super().__init__()
        self.register_buffer("view_temperature", torch.ones(2))

    def branch_logits(self, image, audio):
        return image, audio


def test_a_confidently_wrong_head_gets_the_larger_temperature():
    """The image head is right and mildly sure; the audio head is very sure and right half the time:
    the fit turns the audio head down and lowers the validation loss."""
    g = torch.Generator().manual_seed(0)
    label = torch.randint(0, 10, (400,), generator=g)
    image = torch.randn(400, 10, generator=g)
    image[torch.arange(400), label] += 3.0
    wrong = (label + 1 + torch.randint(0, 9, (400,), generator=g)) % 10
    audio = torch.zeros(400, 10)
    audio[torch.arange(400), torch.where(torch.arange(400) % 2 == 0, label, wrong)] = 10.0
    model = FixedHeads()
    out = fit_view_temperatures(model, Split(image=image, audio=audio, label=label), torch.arange(400),
                                torch.device("cpu"), "fp32")
    t_image, t_audio = out["view_temperature"]
    assert t_audio > 3 * t_image and out["val_loss_after"] < out["val_loss_before"]
    assert model.view_temperature.tolist() == out["view_temperature"]


def test_temperatures_change_late_fusions_logits_and_nothing_else():
    model = LateFusionNet(calibrated=True).eval()
    plain = LateFusionNet().eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if k != "view_temperature"})
    image, audio = torch.rand(3, 1, 28, 28), torch.randn(3, 1, 8000)
    torch.testing.assert_close(model(image, audio), plain(image, audio))  # (1, 1): the late fusion it trains as
    model.view_temperature.copy_(torch.tensor([1.0, 4.0]))
    i, a = plain.branch_logits(image, audio)
    torch.testing.assert_close(model(image, audio), (i + a / 4) / 2)
    assert "view_temperature" not in plain.state_dict()
    rebuilt = build_from_config({"model": "multimodal", "args": {"fusion": "late", "calibrate": True}})
    assert "view_temperature" in rebuilt.state_dict()


def test_a_calibrated_run_records_its_temperatures_and_evaluates(tmp_path):
    runs = tmp_path / "runs"
    out = run_script(["train_multimodal.py", *SMALL_SYNTHETIC, "--fusion", "late", "--calibrate", "--holdout-speaker",
                      "spk1", "--val-speaker", "spk2", "--max-epochs", "2", "--batch-size", "16", "--num-threads", "1",
                      "--runs-dir", str(runs), "--name", "cal"])
    assert out.returncode == 0, out.stderr
    metrics = json.loads((runs / "cal" / "metrics.json").read_text())
    temps = metrics["calibration"]["view_temperature"]
    best = torch.load(runs / "cal" / "checkpoints" / "best.pt", weights_only=True)
    assert best["model"]["view_temperature"].tolist() == temps and best["epoch"] == metrics["best_epoch"]
    assert run_script(["evaluate.py", str(runs / "cal"), "--sweeps", "missing", "--grid",
                       "--num-threads", "1"]).returncode == 0
    out = run_script(["train_multimodal.py", *SMALL_SYNTHETIC, "--calibrate", "--runs-dir", str(runs), "--name", "c"])
    assert out.returncode == 2 and "--calibrate needs --fusion late" in out.stderr


def test_the_confidence_gate_turns_a_head_down_on_the_pairs_it_is_unsure_of():
    """The image head is sure and right on half the pairs and guesses (flat, high entropy) on the rest;
    the audio head is moderately right everywhere. The fitted gate weighs the image by its entropy
    (b < 0 for the image), beats both the plain average and the best pair of temperatures, and a zero
    gate is exactly the plain average."""
    g = torch.Generator().manual_seed(0)
    n = 4000
    label = torch.randint(0, 10, (n,), generator=g)
    image = torch.randn(n, 10, generator=g) * 0.3
    sure = torch.rand(n, generator=g) < 0.5
    image[sure, label[sure]] += 6.0
    audio = torch.randn(n, 10, generator=g)
    audio[torch.arange(n), label] += 1.5
    fitted = fit_confidence_gate(image, audio, label)
    (a_image, b_image), _ = fitted["view_gate"]
    assert b_image < -0.5 and fitted["loss_after"] < fitted["loss_before"]
    assert fitted["loss_before"] == pytest.approx(F.cross_entropy((image + audio) / 2, label).item(), rel=1e-5)
    temperatures = LateFusionNet(calibrated=True)
    temperatures.branch_logits = lambda i, a: (i, a)
    split = Split(image=image, audio=audio, label=label)
    best_temperature = fit_view_temperatures(temperatures, split, torch.arange(n), torch.device("cpu"), "fp32")
    assert fitted["loss_after"] < best_temperature["val_loss_after"] - 0.01
