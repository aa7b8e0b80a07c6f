"""train_multimodal.py end to end: every fusion, width errors, --init-from."""
import json

import pytest
import torch

from common.nets.models import FUSION_CHOICES
from conftest import train_on_course


@pytest.mark.parametrize("fusion", FUSION_CHOICES)
def test_every_fusion_trains_and_reports(fusion, labelled_course, tmp_path):
    out = train_on_course("train_multimodal.py", labelled_course, tmp_path, "--fusion", fusion)
    assert out.returncode == 0, out.stderr
    run = tmp_path / f"multimodal-{fusion}-s0"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["model"] == "multimodal" and metrics["fusion"] == fusion
    assert json.loads((run / "config.json").read_text())["fusion"] == fusion
    for f in ("checkpoints/best.pt", "checkpoints/last.pt", "figures/curves.png", "figures/samples_test.png",
              "predictions_test.csv"):
        assert (run / f).exists(), f
    assert metrics["test"]["n"] == 20 and sum(map(sum, metrics["test"]["confusion"])) == 20
    predictions = (run / "predictions_test.csv").read_text().splitlines()
    correct = sum(int(d) == int(l) for _, d, l in (row.split(",") for row in predictions[1:]))
    assert metrics["test"]["acc"] == pytest.approx(correct / 20, abs=1e-6)


def test_unequal_widths_stop_with_one_line_and_leave_nothing(labelled_course, tmp_path):
    out = train_on_course("train_multimodal.py", labelled_course, tmp_path, "--fusion", "mul", "--audio-dim", "64")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == \
        "error: mul fusion needs equal feature widths, got n_img=128 and n_aud=64"
    assert "Traceback" not in out.stderr
    assert not any(tmp_path.iterdir())
    ok = train_on_course("train_multimodal.py", labelled_course, tmp_path, "--fusion", "concat", "--audio-dim", "64")
    assert ok.returncode == 0, ok.stderr  # concat does not need equal widths


def test_init_from_loads_the_featurizer(labelled_course, tmp_path):
    assert train_on_course("train_image.py", labelled_course, tmp_path, "--name", "img").returncode == 0
    source = torch.load(tmp_path / "img/checkpoints/best.pt", weights_only=True)["model"]
    # a learning rate of 1e-12 keeps the loaded weights (to float precision) through one epoch
    out = train_on_course("train_multimodal.py", labelled_course, tmp_path,
                          "--init-from", str(tmp_path / "img/checkpoints/best.pt"),
                          "--lr", "1e-12", "--name", "mm")
    assert out.returncode == 0, out.stderr
    assert "initialised the image featurizer(s)" in out.stdout
    loaded = torch.load(tmp_path / "mm/checkpoints/best.pt", weights_only=True)["model"]
    for key in ("conv.0.weight", "fc.weight"):
        assert torch.allclose(loaded[f"image_featurizer.{key}"], source[f"featurizer.{key}"], atol=1e-8)
    bad = train_on_course("train_multimodal.py", labelled_course, tmp_path, "--init-from", str(tmp_path / "nope.pt"),
                          "--name", "x")
    assert bad.returncode == 1 and "no checkpoint at" in bad.stderr


def test_the_mlp_bn_projection_head_normalises_and_the_mlp_head_is_unchanged():
    from common.nets.losses import InBatchNTXent
    from common.nets.models import ContrastiveModel, projection_head
    head = projection_head("mlp-bn", 64)
    assert [type(m).__name__ for m in head] == ["Linear", "BatchNorm1d", "ReLU", "Linear", "L2Normalize"]
    out = head(torch.randn(8, 128) * 50)
    assert out.shape == (8, 64) and torch.allclose(out.norm(dim=1), torch.ones(8), atol=1e-5)
    head.eval()
    assert torch.allclose(head(torch.randn(3, 128)).norm(dim=1), torch.ones(3), atol=1e-5)
    # the first recipe's head keeps its layers and state-dict keys, so its kept runs load as before
    mlp = ContrastiveModel(InBatchNTXent(), 64)
    assert [k for k in mlp.state_dict() if k.startswith("image_proj.")] == [
        "image_proj.0.weight", "image_proj.0.bias", "image_proj.2.weight", "image_proj.2.bias"]
    with pytest.raises(ValueError, match="unknown projection head"):
        projection_head("mlp-ln", 64)
