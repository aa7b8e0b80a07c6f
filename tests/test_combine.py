"""combine.py: late fusion of two finished single-view runs, each head's temperature fitted on validation,
a missing (all-zero) view left out."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from common.nets.models import LateFusionNet, build_from_config
from common.training.loop import load_checkpoint

from conftest import SMALL_SYNTHETIC, one_line_error, run_script, train_on_course


def test_a_blank_view_leaves_the_average_and_the_other_head_answers_alone():
    torch.manual_seed(0)
    model = LateFusionNet(calibrated=True, drops_blank_views=True).eval()
    model.view_temperature.copy_(torch.tensor([0.5, 2.0]))
    image, audio = torch.rand(4, 1, 28, 28), torch.randn(4, 1, 8000)
    image[1] = 0
    audio[2] = 0
    with torch.no_grad():
        img_logits, aud_logits = model.branch_logits(image, audio)
        out = model(image, audio)
    assert torch.allclose(out[0], (img_logits[0] / 0.5 + aud_logits[0] / 2.0) / 2)
    assert torch.allclose(out[1], aud_logits[1] / 2.0) and torch.allclose(out[2], img_logits[2] / 0.5)
    plain = LateFusionNet(calibrated=True).eval()  # the trained late fusion: no such rule, as before
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.allclose(plain(image, audio)[1], (img_logits[1] / 0.5 + aud_logits[1] / 2.0) / 2)


@pytest.fixture(scope="module")
def single_view_runs(labelled_course, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    for script, name, extra in (("train_image.py", "img", ()), ("train_audio.py", "aud", ()),
                                ("train_image.py", "img-s1", ("--seed", "1"))):
        out = train_on_course(script, labelled_course, runs, *extra, name=name, max_epochs=2)
        assert out.returncode == 0, out.stderr
    return runs


def test_the_fused_run_answers_as_each_single_run_when_the_other_view_is_missing(single_view_runs, tmp_path):
    """predict.py on the fused run: an image alone gets the image run's own answer (the blank audio
    stand-in leaves the average), a recording alone the audio run's; its files make a finished run."""
    runs = single_view_runs
    out = run_script(["combine.py", str(runs / "img"), str(runs / "aud"), "--name", "both", "--runs-dir",
                      str(tmp_path)])
    assert out.returncode == 0, out.stderr
    fused = tmp_path / "both"
    config = json.loads((fused / "config.json").read_text())
    metrics = json.loads((fused / "metrics.json").read_text())
    assert config["args"]["fusion"] == "late" and config["args"]["experts"] == ["img", "aud"]
    assert config["args"]["name"] == "both" and config["args"]["runs_dir"] == str(tmp_path)
    assert metrics["fusion"] == "late" and 0 <= metrics["test"]["acc"] <= 1
    assert len(metrics["calibration"]["view_temperature"]) == 2
    assert json.loads((fused / "split_indices.json").read_text()) == \
        json.loads((runs / "img" / "split_indices.json").read_text())
    digits, recordings = [], []
    rng = np.random.default_rng(0)
    for i in range(6):
        digits.append(tmp_path / f"d{i}.png")
        Image.fromarray((rng.random((28, 28)) * 255).astype(np.uint8)).save(digits[-1])
    from scipy.io import wavfile
    for i in range(6):
        recordings.append(tmp_path / f"r{i}.wav")
        wavfile.write(recordings[-1], 8000, (rng.standard_normal(6000) * 0.3).astype(np.float32))
    for view, files, single in (("image", digits, "img"), ("audio", recordings, "aud")):
        answers = []
        for run in (fused, runs / single):
            done = run_script(["predict.py", str(run), f"--{view}", *map(str, files), "--json"])
            assert done.returncode == 0, done.stderr
            answers.append([[d for d, _ in json.loads(line)["top3"]] for line in done.stdout.splitlines()
                            if line.startswith("{")])
        assert answers[0] == answers[1] and len(answers[0]) == 6, view  # the same three digits in the same order
    # the fused network itself: with the audio missing, the image run's logits over its temperature
    model = build_from_config(config).eval()
    model.load_state_dict(load_checkpoint(fused / "checkpoints" / "best.pt")["model"])
    image_run = build_from_config(json.loads((runs / "img" / "config.json").read_text())).eval()
    image_run.load_state_dict(load_checkpoint(runs / "img" / "checkpoints" / "best.pt")["model"])
    image = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        alone = model(image, torch.zeros(5, 1, 8000))
        both = model(image, torch.randn(5, 1, 8000))
        assert torch.allclose(alone, image_run(image) / model.view_temperature[0], atol=1e-5)
        assert not torch.allclose(both, alone, atol=1e-3)  # with a recording, the audio head counts


def test_runs_that_do_not_fit_together_are_refused_in_one_line(single_view_runs, tmp_path):
    runs = single_view_runs
    for args, message in [([runs / "aud", runs / "img"], "give an image-only run there"),
                          ([runs / "img", runs / "img"], "give an audio-only run there"),
                          ([runs / "img-s1", runs / "aud"], "different validation or test pairs"),
                          ([runs / "img", tmp_path / "nope"], "is not a finished run folder")]:
        out = run_script(["combine.py", *map(str, args), "--name", "x", "--runs-dir", str(tmp_path)])
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, (args, out.stderr)
        assert not (tmp_path / "x").exists()
    (tmp_path / "taken").mkdir()
    out = run_script(["combine.py", str(runs / "img"), str(runs / "aud"), "--name", "taken", "--runs-dir",
                      str(tmp_path)])
    assert out.returncode == 2 and "exists; give another --name" in out.stderr


def test_the_confidence_gate_is_fitted_on_the_validation_voice_renoised_and_evaluates(tmp_path):
    """combine.py --gate confidence on a nested synthetic fold: the gate is in config.json, metrics.json
    and best.pt alike, fitted on four renderings of the validation pairs, and evaluate.py --grid reads
    the run; the course's files, which the recipe did not build, are refused in one line."""
    runs = tmp_path / "runs"
    fold = [*SMALL_SYNTHETIC, "--holdout-speaker", "spk1", "--val-speaker", "spk2", "--max-epochs", "1",
            "--batch-size", "16", "--num-threads", "1", "--runs-dir", str(runs)]
    for script, name in (("train_image.py", "img"), ("train_audio.py", "aud")):
        out = run_script([script, *fold, "--name", name])
        assert out.returncode == 0, out.stderr
    out = run_script(["combine.py", str(runs / "img"), str(runs / "aud"), "--name", "gated", "--runs-dir", str(runs),
                      "--gate", "confidence"])
    assert out.returncode == 0, out.stderr
    assert "confidence gate image exp(" in out.stdout
    config = json.loads((runs / "gated" / "config.json").read_text())
    calibration = json.loads((runs / "gated" / "metrics.json").read_text())["calibration"]
    n_val = len(json.loads((runs / "img" / "split_indices.json").read_text())["val"])
    assert config["args"]["gate"] == "confidence" and calibration["pairs"] == 4 * n_val
    assert calibration["loss_after"] <= calibration["loss_before"]
    best = torch.load(runs / "gated" / "checkpoints" / "best.pt", weights_only=True)
    assert best["model"]["view_gate"].tolist() == calibration["view_gate"] and "view_temperature" not in best["model"]
    assert run_script(["evaluate.py", str(runs / "gated"), "--sweeps", "missing", "--grid",
                       "--num-threads", "1"]).returncode == 0
    plain = run_script(["combine.py", str(runs / "img"), str(runs / "aud"), "--name", "plain", "--runs-dir", str(runs)])
    assert plain.returncode == 0 and "gate" not in json.loads((runs / "plain" / "config.json").read_text())["args"]


def test_the_confidence_gate_needs_data_the_recipe_built(single_view_runs, tmp_path):
    out = run_script(["combine.py", str(single_view_runs / "img"), str(single_view_runs / "aud"), "--name", "g",
                      "--runs-dir", str(tmp_path), "--gate", "confidence"])
    assert "--gate confidence re-noises the validation pairs" in one_line_error(out) and not (tmp_path / "g").exists()
