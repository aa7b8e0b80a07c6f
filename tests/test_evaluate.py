"""evaluate.py: sweep levels, determinism, clean-view agreement, missing views, one-line errors."""
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from common.data import load_dataset
from common.data.recipe import drawn_test_pairs
from common.data.sources import load_raw_sources
from common.evaluation.robustness import CleanViews, noise_rng
from common.runfolder import unpack_bits
from common.facts import AUDIO_SNR_LEVELS, GRID_AUDIO_SNR, GRID_IMAGE_P, IMAGE_P_LEVELS, MILD_P, MILD_SNR_DB
from common.nets.models import build_from_config
from common.training.loop import evaluate

from conftest import ROOT, SMALL_SYNTHETIC, copy_run, one_line_error, run_cli, run_script

TRAIN_FLAGS = [*SMALL_SYNTHETIC, "--max-epochs", "2", "--batch-size", "16", "--num-threads", "1",
               "--precision", "fp32"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three small finished runs on the synthetic source: image-only, audio-only, late fusion."""
    folder = tmp_path_factory.mktemp("runs")
    for script, name, extra in (("train_image.py", "image", []), ("train_audio.py", "audio", []),
                                ("train_multimodal.py", "late", ["--fusion", "late"])):
        out = run_script([script, *TRAIN_FLAGS, "--runs-dir", str(folder), "--name", name, *extra])
        assert out.returncode == 0, out.stderr
    return folder


def evaluate_runs(*args):
    return run_script(["evaluate.py", "--num-threads", "1", *map(str, args)])


def load_result(run):
    return json.loads((run / "robustness.json").read_text())


def model_of(run):
    config = json.loads((run / "config.json").read_text())
    model = build_from_config(config)
    model.load_state_dict(torch.load(run / "checkpoints" / "best.pt", weights_only=True)["model"])
    return model



def test_random_levels_render_every_pair_copy_by_copy_over_the_sweeps_range():
    """CleanViews.at_random_levels (combine.py --gate confidence's calibration set): copies x pairs rows,
    labels repeated, seeded; images from untouched to nearly all pixels replaced; about a seventh of the
    recordings with no noise at all (SNR drawn in [-30, 40] dB, above 30 dB clean)."""
    raw = load_raw_sources("synthetic", synthetic_size=200)
    clean = CleanViews(raw.test, drawn_test_pairs(raw, 40, 0))
    rendered = clean.at_random_levels(3, np.random.default_rng(0))
    again = clean.at_random_levels(3, np.random.default_rng(0))
    assert rendered.image.shape == (120, 1, 28, 28) and rendered.audio.shape == (120, 1, 8000)
    assert torch.equal(rendered.label, clean.label.repeat(3))
    assert torch.equal(rendered.image, again.image) and torch.equal(rendered.audio, again.audio)
    originals = torch.from_numpy(clean.images).repeat(3, 1, 1)
    changed = (rendered.image[:, 0] != originals).float().mean((1, 2))
    assert changed.min() < 0.1 and 0.5 < changed.max() < 0.96
    no_noise = clean.audio_at(np.inf, noise_rng(0, "clean")).repeat(3, 1, 1)
    untouched = (rendered.audio == no_noise).flatten(1).all(1).sum().item()
    assert 3 <= untouched <= 40

def test_levels_outputs_and_one_line_per_run(runs):
    out = evaluate_runs(runs / "image", runs / "late")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("image;") and lines[1].startswith("late;")
    image, late = load_result(runs / "image"), load_result(runs / "late")
    assert [row["p"] for row in image["image_sweep"]] == list(IMAGE_P_LEVELS)
    assert "audio_sweep" not in image and "missing" not in image  # a unimodal run sweeps its own view
    assert [row["p"] for row in late["image_sweep"]] == list(IMAGE_P_LEVELS)
    assert [row["snr_db"] for row in late["audio_sweep"]] == list(AUDIO_SNR_LEVELS)
    assert set(late["missing"]) == {"both_mild", "image_zeros", "image_train_mean", "audio_zeros",
                                    "audio_train_mean", "image_surviving_head", "audio_surviving_head"}
    assert late["fresh"]["data_seed"] == 1000 and set(late["fresh"]["per_regime_acc"]) == \
        {"image_noisy", "audio_noisy", "both_mild"}
    for run in ("image", "late"):
        assert (runs / run / "figures" / "robustness.png").stat().st_size > 0
    for row in late["image_sweep"] + late["audio_sweep"]:
        assert 0.0 <= row["acc"] <= 1.0 and np.isfinite(row["loss"])


def test_twice_gives_identical_json(runs):
    assert evaluate_runs(runs / "late").returncode == 0
    first = (runs / "late" / "robustness.json").read_text()
    assert evaluate_runs(runs / "late").returncode == 0
    assert (runs / "late" / "robustness.json").read_text() == first


def clean_views_score(run, view):
    """Accuracy and loss of the run's model on the --clean-views build of the same test pairs."""
    config = json.loads((run / "config.json").read_text())
    data = load_dataset("synthetic", data_seed=0, synthetic_size=200, clean_views=True, log=lambda m: None)
    test_index = torch.tensor(json.loads((run / "split_indices.json").read_text())["test"])
    out = evaluate(model_of(run), data.test, test_index, (view,), 512, torch.device("cpu"), config["precision"])
    labels = data.test.label[test_index]
    loss = torch.nn.functional.cross_entropy(out["logits"], labels).item()
    return (out["logits"].argmax(1) == labels).float().mean().item(), loss


def test_no_noise_matches_a_clean_views_evaluation(runs):
    assert evaluate_runs(runs / "image", runs / "audio").returncode == 0
    acc, loss = clean_views_score(runs / "image", "image")
    p0 = load_result(runs / "image")["image_sweep"][0]
    assert p0["p"] == 0.0 and p0["acc"] == acc and p0["loss"] == pytest.approx(loss, rel=1e-6)
    acc, loss = clean_views_score(runs / "audio", "audio")
    clean = load_result(runs / "audio")["audio_clean"]
    assert clean["acc"] == acc and clean["loss"] == pytest.approx(loss, rel=1e-6)


def test_a_missing_view_is_zeros_and_the_late_head_stands_alone(runs):
    assert evaluate_runs(runs / "late", "--sweeps", "missing").returncode == 0
    missing = load_result(runs / "late")["missing"]
    raw = load_raw_sources("synthetic", synthetic_size=200)
    data = load_dataset("synthetic", synthetic_size=200, log=lambda m: None)
    test_index = torch.tensor(json.loads((runs / "late" / "split_indices.json").read_text())["test"])
    pairs = {k: v[test_index.numpy()] for k, v in drawn_test_pairs(raw, len(data.test), 0).items()}
    clean = CleanViews(raw.test, pairs)
    mild_image = clean.image_at(MILD_P, noise_rng(0, "mild", 0))
    mild_audio = clean.audio_at(MILD_SNR_DB, noise_rng(0, "mild", 1))
    model = model_of(runs / "late").eval()
    with torch.no_grad():
        image_logits, audio_logits = model.branch_logits(torch.zeros_like(mild_image), mild_audio)
    labels = clean.label
    # late fusion averages the two heads' logits: with the image zeroed, the image head gives one fixed vector
    both = (image_logits + audio_logits) / 2
    assert missing["image_zeros"]["acc"] == pytest.approx((both.argmax(1) == labels).float().mean().item(), abs=1e-6)
    assert missing["image_surviving_head"]["acc"] == pytest.approx(
        (audio_logits.argmax(1) == labels).float().mean().item(), abs=1e-6)
    assert torch.allclose(image_logits, image_logits[:1].expand_as(image_logits), atol=1e-5)


def test_the_audio_chunk_size_does_not_change_the_noise(monkeypatch):
    """Levels are re-noised AUDIO_CHUNK waveforms at a time; a level's numbers must not depend on it."""
    import common.evaluation.robustness as robustness
    raw = load_raw_sources("synthetic", synthetic_size=200)
    pairs = drawn_test_pairs(raw, 40, 0)
    clean = CleanViews(raw.test, pairs)
    renders = {}
    for chunk in (7, 1000):
        monkeypatch.setattr(robustness, "AUDIO_CHUNK", chunk)
        renders[chunk] = clean.audio_at(-5.0, noise_rng(0, "audio", 4))
    assert renders[7].shape == (40, 1, 8000) and torch.equal(renders[7], renders[1000])
    assert not torch.equal(renders[7], clean.audio_at(-5.0, noise_rng(0, "audio", 5)))  # the stream matters


def test_errors_are_one_line(runs, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(runs / "image", broken)
    os.remove(broken / "checkpoints" / "best.pt")
    contrastive = tmp_path / "contrastive"
    contrastive.mkdir()
    config = json.loads((runs / "image" / "config.json").read_text())
    (contrastive / "config.json").write_text(json.dumps({**config, "model": "contrastive"}))
    for args, message in (([broken], "has no checkpoints/best.pt"),
                          ([contrastive], "is a 'contrastive' run"),
                          ([runs / "image", "--sweeps", "bogus"], "invalid choice: 'bogus'"),
                          ([tmp_path / "nothing"], "is not a run folder")):
        out = evaluate_runs(*args)
        assert out.returncode == 2, out.stderr
        assert "Traceback" not in out.stderr
        assert message in out.stderr.strip().splitlines()[-1]


def test_reproduce_evaluates_each_run_right_after_training_and_keeps_it(tmp_path):
    """A two-model study: each run gets its robustness.json, its kept files, then the report."""
    env = {**os.environ, "PYTHON": sys.executable}
    command = ["bash", os.path.join(ROOT, "scripts", "reproduce.sh"), "--models", "image late",
               "--runs-dir", str(tmp_path / "study"), "--results", str(tmp_path / "results"),
               "--", *TRAIN_FLAGS, "--max-epochs", "1"]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    order = [line for line in out.stdout.splitlines() if line.startswith("== ")]
    assert order == ["== start image-s0", "== evaluate image-s0", f"== kept image-s0 in {tmp_path}/results/image-s0",
                     "== start multimodal-late-s0", "== evaluate multimodal-late-s0",
                     f"== kept multimodal-late-s0 in {tmp_path}/results/multimodal-late-s0"]
    for run in ("image-s0", "multimodal-late-s0"):
        assert (tmp_path / "study" / run / "robustness.json").exists()
        kept = sorted(str(p.relative_to(tmp_path / "results" / run)) for p in (tmp_path / "results" / run).rglob("*")
                      if p.is_file())
        assert kept == ["config.json", "figures/curves.png", "metrics.json", "predictions_test.csv",
                        "robustness.json"]
    assert (tmp_path / "results" / "results.md").exists()  # the report is built from the kept files
    assert not list(tmp_path.glob("results.tmp-*"))
    # a fresh machine: no run folders, only the kept results; nothing is trained again
    shutil.rmtree(tmp_path / "study")
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert [line for line in again.stdout.splitlines() if line.startswith("== ")] == [
        f"== skip image-s0: kept in {tmp_path}/results/image-s0",
        f"== skip multimodal-late-s0: kept in {tmp_path}/results/multimodal-late-s0"]
    assert not (tmp_path / "study").exists()


@pytest.mark.parametrize("fusion", ["concat", "add", "attention-tokens", "late"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_fixed_views_precomputed_features_give_the_same_logits(fusion, precision):
    """The sweeps run the fixed view's featurizer once; the logits must not notice. Both sides cut the
    pairs into the same batches (EVAL_BATCH): how a CPU's kernels round depends on the batch size, so
    batches of another size may differ in the last bits on some machines, with or without the cache."""
    from common.data import Split
    from common.evaluation.robustness import EVAL_BATCH, with_fixed_view
    from common.nets.models import build_multimodal
    torch.manual_seed(0)
    model = build_multimodal(fusion).eval()
    n = EVAL_BATCH + 24  # two featurizer batches, the second one short
    split = Split(image=torch.rand(n, 1, 28, 28), audio=torch.randn(n, 1, 8000), label=torch.arange(n) % 10)
    cpu, index, views = torch.device("cpu"), torch.arange(n), ("image", "audio")
    full = evaluate(model, split, index, views, EVAL_BATCH, cpu, precision)["logits"]
    for view in views:
        fixed, features = with_fixed_view(model, view, getattr(split, view), cpu, precision)
        cached = Split(**{**{v: getattr(split, v) for v in views}, view: features}, label=split.label)
        assert torch.equal(evaluate(fixed, cached, index, views, EVAL_BATCH, cpu, precision)["logits"], full)
    assert isinstance(model.audio_featurizer, torch.nn.Module) and hasattr(model.audio_featurizer, "conv")


@pytest.mark.parametrize("fusion", ["concat", "bilinear", "attention-tokens", "late"])
def test_featurizers_and_head_in_separate_batches_score_as_the_whole_model(fusion):
    """robustness scores a fused model by running the featurizers in small batches and fusion and head on
    the precomputed features in large ones, and featurizes a missing view's stand-in once, on one row;
    all of it must give what the whole model gives on the same inputs."""
    from common.data import Split
    from common.evaluation.robustness import _score, with_fixed_view
    from common.nets.models import build_multimodal
    torch.manual_seed(0)
    model = build_multimodal(fusion).eval()
    n = 300
    split = Split(image=torch.rand(n, 1, 28, 28), audio=torch.randn(n, 1, 8000), label=torch.arange(n) % 10)
    cpu, views, index = torch.device("cpu"), ("image", "audio"), torch.arange(n)
    whole = evaluate(model, split, index, views, 512, cpu, "fp32")
    scored = _score(model, split, views, cpu, "fp32")
    assert scored["acc"] == pytest.approx(whole["acc"]) and scored["loss"] == pytest.approx(whole["loss"], rel=1e-5)
    # a missing audio: zeros for every pair, against its features computed once and expanded
    zeros = Split(image=split.image, audio=torch.zeros(n, 1, 8000), label=split.label)
    net, features = with_fixed_view(model, "audio", torch.zeros(1, 1, 8000), cpu, "fp32")
    stand_in = Split(image=split.image, audio=features.expand(n, *features.shape[1:]), label=split.label)
    once = evaluate(net, stand_in, index, views, 128, cpu, "fp32")["logits"]
    torch.testing.assert_close(once, evaluate(model, zeros, index, views, 512, cpu, "fp32")["logits"])
    # and with the kept view precomputed as well, as the missing-view measurements do
    both, image_features = with_fixed_view(net, "image", split.image, cpu, "fp32")
    both_fixed = Split(image=image_features, audio=stand_in.audio, label=split.label)
    torch.testing.assert_close(evaluate(both, both_fixed, index, views, 128, cpu, "fp32")["logits"], once)


def test_2_a_robustness_json_of_other_weights_is_named_and_left_out(evaluated, tmp_path, capsys):
    import report
    run = copy_run(evaluated, tmp_path)
    robustness = json.loads((run / "robustness.json").read_text())
    assert robustness["best_epoch"] == 1 and len(robustness["best_sha256"]) == 64
    robustness["best_epoch"] = 7  # as if the run had trained on after the evaluation
    (run / "robustness.json").write_text(json.dumps(robustness))
    runs, _, _ = report.read_runs(str(tmp_path))
    assert runs[0]["robustness"] is None and "ignoring stale robustness" in capsys.readouterr().err
    out = run_cli(["scripts/runs.py", "current", str(run)])
    assert out.returncode == 1 and "measured the weights of epoch 7" in out.stderr


def test_2_a_partial_evaluation_of_the_same_weights_keeps_the_earlier_sweeps(evaluated, tmp_path):
    run = copy_run(evaluated, tmp_path)
    assert run_script(["evaluate.py", str(run), "--sweeps", "image", "--num-threads", "1"]).returncode == 0
    robustness = json.loads((run / "robustness.json").read_text())
    assert robustness["sweeps"] == ["fresh", "image"] and "fresh" in robustness and "image_sweep" in robustness


def test_6_evaluate_checks_what_it_reads_and_writes_before_the_work(evaluated, tmp_path):
    run = copy_run(evaluated, tmp_path)
    (run / "metrics.json").write_text("{broken")
    out = run_script(["evaluate.py", str(run), "--num-threads", "1"])
    assert "not valid JSON" in one_line_error(out) and "building" not in out.stderr + out.stdout
    run = copy_run(evaluated, tmp_path / "second")
    (run / "robustness.json").unlink()
    (run / "robustness.json").symlink_to(tmp_path / "elsewhere.json")
    assert "is a symbolic link" in one_line_error(run_script(["evaluate.py", str(run)]))


@pytest.mark.parametrize("bad", [10 ** 7, -3])
def test_7_split_indices_outside_the_splits_are_refused(bad, evaluated, tmp_path):
    run = copy_run(evaluated, tmp_path)
    indices = json.loads((run / "split_indices.json").read_text())
    indices["test"][0] = bad
    (run / "split_indices.json").write_text(json.dumps(indices))
    assert "names test rows outside" in one_line_error(run_script(["evaluate.py", str(run), "--num-threads", "1"]))


def test_8_the_fresh_draw_is_never_the_test_split_and_bad_numbers_are_one_line(evaluated):
    assert "its test split, not a fresh one" in one_line_error(run_script(["evaluate.py", str(evaluated),
                                                                           "--data-seed", "0"]))
    for flags in (["--data-seed", "-1"], ["--num-threads", "-2"]):
        out = run_script(["evaluate.py", str(evaluated), *flags])
        assert out.returncode == 2 and "Traceback" not in out.stderr


def test_grid_row_and_column_at_the_mild_levels_are_the_sweeps(runs, tmp_path):
    """--grid renders each level as the sweeps do: its row at p = 0.1 is the audio sweep (image held
    mild), its column at 20 dB the image sweep (audio held mild), their crossing the both-mild score,
    and a missing view the zeros stand-in; each cell keeps every test pair's correctness."""
    late = copy_run(runs / "late", tmp_path)
    out = evaluate_runs(late, "--grid")
    assert out.returncode == 0, out.stderr
    result = load_result(late)
    grid = result["grid"]
    cells = {(c["p"], c["snr_db"]): c for c in grid["cells"]}
    assert len(cells) == len(GRID_IMAGE_P) * len(GRID_AUDIO_SNR) == 49 and grid["n"] == result["n_test"]
    # the same inputs: the same accuracy, and the loss up to float summation order (mean vs sum / n)
    same = lambda a, b: a["acc"] == b["acc"] and math.isclose(a["loss"], b["loss"], rel_tol=1e-6)  # noqa: E731
    for row in result["audio_sweep"]:
        if row["snr_db"] in GRID_AUDIO_SNR and row["snr_db"] != MILD_SNR_DB:
            assert same(cells[(MILD_P, row["snr_db"])], row), row["snr_db"]
    for row in result["image_sweep"]:
        if row["p"] in GRID_IMAGE_P and row["p"] != MILD_P:
            assert same(cells[(row["p"], MILD_SNR_DB)], row), row["p"]
    assert same(cells[(MILD_P, "clean")], result["audio_clean"])
    assert same(cells[(MILD_P, MILD_SNR_DB)], result["missing"]["both_mild"])
    assert same(cells[("missing", MILD_SNR_DB)], result["missing"]["image_zeros"])
    assert same(cells[(MILD_P, "missing")], result["missing"]["audio_zeros"])
    for cell in cells.values():
        bits = unpack_bits(cell["correct"], grid["n"])
        assert abs(bits.mean() - cell["acc"]) < 1e-6
    image = copy_run(runs / "image", tmp_path)  # a single-view run: its own axis only
    assert evaluate_runs(image, "--sweeps", "fresh", "--grid").returncode == 0
    image_grid = load_result(image)["grid"]
    assert [c["p"] for c in image_grid["cells"]] == list(GRID_IMAGE_P) and "snr_db" not in image_grid["cells"][0]


@pytest.mark.parametrize("change, message", [
    (lambda c: c["args"].update(fusion="nope"), "its --fusion 'nope' is not a value that flag takes"),
    (lambda c: c["args"].update(mel_channels=[10 ** 6, 3]), "its --mel-channels"),
    (lambda c: c["args"].update(modality_dropout=None), "its --modality-dropout None"),
    (lambda c: c.update(args=[1]), "config.json"),
])
def test_a_config_that_no_flag_would_take_is_refused_in_one_line(runs, tmp_path, change, message):
    """evaluate.py and predict.py check a run's saved flags as the parser checks them, before building."""
    late = copy_run(runs / "late", tmp_path)
    config = json.loads((late / "config.json").read_text())
    change(config)
    (late / "config.json").write_text(json.dumps(config))
    for out in (evaluate_runs(late), run_script(["predict.py", str(late), "--image", str(late / "config.json")])):
        assert message in one_line_error(out)


def test_an_empty_test_index_is_refused_not_measured_as_nan(runs, tmp_path):
    image = copy_run(runs / "image", tmp_path)
    indices = json.loads((image / "split_indices.json").read_text())
    (image / "split_indices.json").write_text(json.dumps({**indices, "test": []}))
    before = (image / "robustness.json").read_bytes() if (image / "robustness.json").exists() else None
    assert "names no test pairs" in one_line_error(evaluate_runs(image))
    after = (image / "robustness.json").read_bytes() if (image / "robustness.json").exists() else None
    assert after == before  # nothing written
