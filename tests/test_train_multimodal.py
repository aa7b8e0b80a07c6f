"""train_multimodal.py end to end: every fusion, width errors, --init-from."""
import argparse
import json

import pytest
import torch

from common.data.sources import dataset_from_args
from common.nets.models import FUSION_CHOICES, build_from_config
from common.training.loop import evaluate

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
    assert [p.name for p in tmp_path.iterdir()] == [".multimodal-mul-s0.claim"]  # the name's empty lock, no run
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


def argparse_namespace(saved):
    return argparse.Namespace(**{k: saved.get(k) for k in ("data", "data_root", "data_seed", "synthetic_size",
                                                           "clean_views")})


@pytest.mark.parametrize("fusion", ["concat", "late"])
def test_modality_dropout_is_recorded_changes_training_and_never_touches_evaluation(fusion, labelled_course, tmp_path):
    plain = train_on_course("train_multimodal.py", labelled_course, tmp_path, "--fusion", fusion, "--name", "plain")
    fill = "train_mean" if fusion != "late" else "zeros"  # late fusion fills nothing: it drops the lost head
    dropped = train_on_course("train_multimodal.py", labelled_course, tmp_path, "--fusion", fusion, "--name", "dropped",
                              "--modality-dropout", "0.5", "--modality-dropout-fill", fill)
    assert plain.returncode == 0 and dropped.returncode == 0, dropped.stderr
    config = json.loads((tmp_path / "dropped/config.json").read_text())
    assert config["args"]["modality_dropout"] == 0.5 and config["args"]["modality_dropout_fill"] == fill
    a, b = (torch.load(tmp_path / n / "checkpoints/best.pt", weights_only=True)["model"] for n in ("plain", "dropped"))
    assert any(not torch.equal(a[k], b[k]) for k in a)  # the same seed trained differently
    # the test numbers in metrics.json are those of the whole views: evaluating best.pt again agrees
    model = build_from_config(config)
    model.load_state_dict(b)
    dataset = dataset_from_args(argparse_namespace(config["args"]))
    index = torch.tensor(json.loads((tmp_path / "dropped/split_indices.json").read_text())["test"])
    again = evaluate(model, dataset.test, index, ("image", "audio"), 512, torch.device("cpu"), config["precision"])
    metrics = json.loads((tmp_path / "dropped/metrics.json").read_text())
    assert again["acc"] == pytest.approx(metrics["test"]["acc"]) and again["loss"] == pytest.approx(
        metrics["test"]["loss"], rel=1e-5)
    bad = train_on_course("train_multimodal.py", labelled_course, tmp_path, "--modality-dropout", "1.5",
                          "--name", "bad")
    assert bad.returncode == 2 and "must be in [0, 1]" in bad.stderr
    for flags in (["--modality-dropout-fill", "train_mean"],
                  ["--modality-dropout", "0.3", "--modality-dropout-fill", "train_mean", "--fusion", "late"]):
        bad = train_on_course("train_multimodal.py", labelled_course, tmp_path, *flags, "--name", "bad")
        assert bad.returncode == 2 and "--modality-dropout-fill needs --modality-dropout above 0" in bad.stderr
        assert not (tmp_path / "bad").exists()
