"""common/nets/models.py: modality dropout's draws and stand-ins, late fusion without a lost view's head, and
combine.py's confidence gate."""
import math

import pytest
import torch

from common.nets.models import build_multimodal, draw_present_views, fill_missing


def test_modality_dropout_drops_the_right_share_one_view_at_a_time_seeded():
    torch.manual_seed(0)
    present = draw_present_views(20_000, 0.3)
    assert present.shape == (20_000, 2) and present.dtype == torch.bool
    image_gone, audio_gone = (~present[:, 0]).float().mean().item(), (~present[:, 1]).float().mean().item()
    # binomial standard deviations: 0.0032 for the share dropped, 0.0025 for each view
    assert abs(image_gone + audio_gone - 0.3) < 0.015
    assert abs(image_gone - 0.15) < 0.012 and abs(audio_gone - 0.15) < 0.012
    assert present.any(dim=1).all()  # never both views
    torch.manual_seed(0)
    assert torch.equal(draw_present_views(20_000, 0.3), present)
    torch.manual_seed(1)
    assert not torch.equal(draw_present_views(20_000, 0.3), present)
    assert draw_present_views(100, 0.0).all()
    assert (draw_present_views(1000, 1.0).sum(1) == 1).all()


def test_fill_missing_replaces_only_the_lost_views():
    image, audio = torch.rand(3, 1, 28, 28), torch.randn(3, 1, 8000)
    present = torch.tensor([[True, True], [False, True], [True, False]])
    stand_ins = (torch.full((1, 28, 28), 0.25), torch.zeros(1, 8000))
    new_image, new_audio = fill_missing(image, audio, present, stand_ins)
    assert torch.equal(new_image[0], image[0]) and torch.equal(new_audio[0], audio[0])
    assert (new_image[1] == 0.25).all() and torch.equal(new_audio[1], audio[1])
    assert torch.equal(new_image[2], image[2]) and (new_audio[2] == 0).all()


def test_late_fusion_leaves_the_lost_views_head_out_of_the_average():
    torch.manual_seed(0)
    model = build_multimodal("late").eval()
    image, audio = torch.rand(3, 1, 28, 28), torch.randn(3, 1, 8000)
    img_logits, aud_logits = model.branch_logits(image, audio)
    present = torch.tensor([[True, True], [False, True], [True, False]])
    out = model(image, audio, present=present)
    torch.testing.assert_close(out[0], (img_logits[0] + aud_logits[0]) / 2)
    torch.testing.assert_close(out[1], aud_logits[1])
    torch.testing.assert_close(out[2], img_logits[2])
    torch.testing.assert_close(model(image, audio), (img_logits + aud_logits) / 2)


def test_a_zero_confidence_gate_is_the_plain_average_and_a_fitted_one_weighs_each_pair():
    """LateFusionNet(confidence_gate=True): with the gate at 0 its output is the plain late average; with
    (a, b) = (0, -1) for the image each pair's image logits are scaled by exp(-H), H their entropy; a
    state dict round-trips the gate, and build_from_config builds it for combine.py's --gate confidence."""
    from common.nets.models import LateFusionNet, build_from_config, confidence_scaled, entropy
    torch.manual_seed(0)
    gated, plain = LateFusionNet(confidence_gate=True).eval(), LateFusionNet().eval()
    plain.load_state_dict({k: v for k, v in gated.state_dict().items() if k != "view_gate"})
    image, audio = torch.rand(6, 1, 28, 28), torch.randn(6, 1, 8000)
    with torch.no_grad():
        assert torch.allclose(gated(image, audio), plain(image, audio), atol=1e-6)
        gated.view_gate.copy_(torch.tensor([[0.0, -1.0], [0.0, 0.0]]))
        z_image, z_audio = gated.branch_logits(image, audio)
        expected = (z_image * torch.exp(-entropy(z_image)) + z_audio) / 2
        assert torch.allclose(gated(image, audio), expected, atol=1e-6)
    flat, peaked = torch.zeros(1, 10), torch.tensor([[20.0] + [0.0] * 9])
    assert entropy(flat).item() == pytest.approx(math.log(10)) and entropy(peaked).item() < 1e-6
    assert torch.allclose(confidence_scaled(peaked, torch.tensor([0.5, -1.0])), peaked * math.exp(0.5), atol=1e-5)
    config = {"model": "multimodal", "args": {"fusion": "late", "calibrate": True, "experts": ["i", "a"],
                                              "gate": "confidence"}}
    rebuilt = build_from_config(config)
    assert hasattr(rebuilt, "view_gate") and not hasattr(rebuilt, "view_temperature")
    rebuilt.load_state_dict(gated.state_dict())
    assert torch.equal(rebuilt.view_gate, gated.view_gate)
