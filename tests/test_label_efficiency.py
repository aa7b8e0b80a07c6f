"""common/evaluation/label_efficiency.py and evaluate_contrastive.py: the few-label protocol, its floors, and a
contrastive run measured end to end (second recipe) on the small synthetic set."""
import json

import pytest
import torch

from common.data.sources import dataset_from_args
from common.training.retrieval import encode, retrieval_by_group
from common.evaluation.label_efficiency import budget_subsets, floor_features, probe_rows
from common.nets.losses import InBatchNTXent
from common.nets.models import ContrastiveModel

from conftest import SMALL_SYNTHETIC, run_script

RECIPE = ["--head", "mlp-bn", "--feat-dropout", "0.1", "--optimizer", "adamw", "--weight-decay", "1e-4",
          "--warmup-epochs", "1", "--schedule", "cosine", "--augment", "views", "--select", "val_digit1"]


def test_the_budget_validation_subset_is_class_balanced_seeded_and_no_larger_than_the_budget():
    labels = torch.arange(2000) % 10
    train_idx, val_idx = torch.arange(0, 1600), torch.arange(1600, 2000)
    train, val = budget_subsets(train_idx, val_idx, labels, 0.05, seed=3)
    assert len(train) == 80 and len(val) == 80  # 5% of 160 per class, and as many validation pairs
    assert torch.bincount(labels[train]).tolist() == [8] * 10 and torch.bincount(labels[val]).tolist() == [8] * 10
    assert set(val.tolist()) <= set(val_idx.tolist()) and set(train.tolist()) <= set(train_idx.tolist())
    again = budget_subsets(train_idx, val_idx, labels, 0.05, seed=3)
    other = budget_subsets(train_idx, val_idx, labels, 0.05, seed=4)
    assert torch.equal(again[0], train) and torch.equal(again[1], val)
    assert not torch.equal(other[0], train) and not torch.equal(other[1], val)
    # a budget larger than the validation split: the whole validation split
    train, val = budget_subsets(train_idx, val_idx, labels, 1.0, seed=0)
    assert len(train) == 1600 and torch.equal(val, val_idx)
    # unequal classes: each digit gets what the budget holds of it, never more in all
    skewed = torch.cat([torch.zeros(1000, dtype=torch.long), torch.arange(1000) % 9 + 1])
    train, val = budget_subsets(torch.arange(0, 1500), torch.arange(1500, 2000), skewed, 0.013, seed=1)
    assert len(val) <= len(train)
    assert torch.bincount(skewed[val], minlength=10).tolist() == \
        [min(a, b) for a, b in zip(torch.bincount(skewed[train], minlength=10).tolist(),
                                   torch.bincount(skewed[1500:2000], minlength=10).tolist())]


def test_retrieval_by_group_counts_each_regimes_queries_against_the_whole_gallery():
    labels = torch.tensor([0, 1, 0, 1])
    groups = torch.tensor([0, 0, 1, 1])
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([[1.0, 0.1], [0.1, 1.0], [0.0, 1.0], [1.0, 0.0]])  # item 2 and 3 swapped digits
    out = retrieval_by_group(x, y, labels, groups, ("a", "b"), "cosine", ks=(1,))
    # the expected hits, worked out from the similarity matrix itself
    sims = torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(y, dim=1).t()
    top = sims.argmax(1)
    expected = (labels[top] == labels).float()
    assert out["all"]["digit@1_img2aud"] == pytest.approx(expected.mean().item())
    assert out["a"]["digit@1_img2aud"] == pytest.approx(expected[:2].mean().item())
    assert out["b"]["digit@1_img2aud"] == pytest.approx(expected[2:].mean().item())
    assert out["a"]["n"] == 2 and out["b"]["n"] == 2 and out["all"]["n"] == 4
    empty = retrieval_by_group(x, y, labels, groups, ("a", "b", "c"), "cosine", ks=(1,))
    assert empty["c"] == {"n": 0, "digit@1_img2aud": None, "digit@1_aud2img": None}


@pytest.fixture(scope="module")
def small_synthetic(tmp_path_factory):
    with pytest.MonkeyPatch.context() as env:  # a module fixture runs before the private cache is set
        env.setenv("AVDIGITS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        return dataset_from_args(type("A", (), {"data": "synthetic", "data_root": None, "data_seed": 0,
                                                "synthetic_size": 200, "clean_views": False})())


@pytest.mark.slow  # fits linear probes on a dataset's features
def test_a_probe_on_frozen_features_changes_no_featurizer_weight(small_synthetic):
    torch.manual_seed(0)
    model = ContrastiveModel(InBatchNTXent(), 64, head="mlp-bn")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train, test = small_synthetic.train, small_synthetic.test
    every = torch.arange(len(train))
    codes, test_codes = encode(model, train, every, torch.device("cpu"), "fp32"), \
        encode(model, test, torch.arange(len(test)), torch.device("cpu"), "fp32")
    cut = len(every) * 4 // 5
    rows = probe_rows({"image": codes["feat_image"], "audio": codes["feat_audio"]}, train.label, every[:cut],
                      every[cut:], {"image": test_codes["feat_image"], "audio": test_codes["feat_audio"]}, test.label,
                      test.meta["regime"], fractions=(0.1,), seeds=(0,), steps=10)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm's running stats included
    assert [r["features"] for r in rows] == ["image", "audio", "both"]


def test_the_floors_see_the_inputs_themselves(small_synthetic):
    features = floor_features(small_synthetic.train)
    assert features["image"].shape == (len(small_synthetic.train), 784)
    assert features["audio"].shape == (len(small_synthetic.train), 128)
    assert torch.equal(features["image"][3], small_synthetic.train.image[3].flatten())


@pytest.fixture(scope="module")
def v2_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    out = run_script(["train_contrastive.py", *SMALL_SYNTHETIC, "--runs-dir", str(runs), "--name", "v2",
                      "--max-epochs", "2", "--batch-size", "32", "--num-threads", "1", *RECIPE,
                      "--loss", "nt_log", "--learn-tau", "--learn-bias", "--bias-init", "prior", "--own-lr", "0.01"])
    assert out.returncode == 0, out.stderr
    return runs / "v2", out.stdout


def test_the_second_recipe_trains_and_is_measured(v2_run, tmp_path):
    run, stdout = v2_run
    config = json.loads((run / "config.json").read_text())["args"]
    assert (config["head"], config["augment"], config["select"], config["bias_init"]) == \
        ("mlp-bn", "views", "val_digit1", "prior")
    last = torch.load(run / "checkpoints/last.pt", weights_only=True)
    groups = {g["name"]: g for g in last["optimizer"]["param_groups"]}
    assert groups["own_lr"]["base_lr"] == 0.01 and len(groups["own_lr"]["params"]) == 2  # tau and bias
    assert float(last["model"]["loss.bias"]) != pytest.approx(-3.4340, abs=1e-4)  # -ln 31, learned from there
    history = last["history"]
    assert all(0 <= h["val_digit1_img2aud_acc"] <= 1 for h in history)
    best = max(history, key=lambda h: (h["val_digit1_img2aud_acc"] + h["val_digit1_aud2img_acc"]) / 2)
    assert json.loads((run / "metrics.json").read_text())["best_epoch"] == best["epoch"]
    out = run_script(["evaluate_contrastive.py", str(run), "--num-threads", "1", "--fractions", "0.1", "1"])
    assert out.returncode == 0, out.stderr
    probes = json.loads((run / "probes.json").read_text())
    assert probes["kind"] == "pretrained" and probes["synthetic"] is True
    assert {(r["fraction"], r["features"]) for r in probes["probes"]} == \
        {(f, w) for f in (0.1, 1.0) for w in ("image", "audio", "both")}
    assert len(probes["probes"]) == 2 * 3 * 3  # two shares, three label seeds, three feature sets
    for r in probes["probes"]:
        assert r["n_val"] <= r["n_train"]
        assert 0 <= r["test_acc"] <= 1 and set(r["test_acc_by_regime"]) == {"image_noisy", "audio_noisy",
                                                                           "both_mild"}
    assert set(probes["retrieval_test"]) == {"all", "image_noisy", "audio_noisy", "both_mild"}
    assert "frozen probe on both" in out.stdout


def test_evaluate_contrastive_floors_and_refusals(v2_run, tmp_path):
    run, _ = v2_run
    out = run_script(["evaluate_contrastive.py", "raw", *SMALL_SYNTHETIC, "--fractions", "0.1", "--label-seeds", "0",
                      "--out", str(tmp_path / "raw.json")])
    assert out.returncode == 0, out.stderr
    raw = json.loads((tmp_path / "raw.json").read_text())
    assert raw["kind"] == "raw" and len(raw["probes"]) == 3
    assert raw["protocol"]["split"].startswith("train/val split of seed 0")
    out = run_script(["evaluate_contrastive.py", "raw", *SMALL_SYNTHETIC, "--holdout-speaker", "spk1", "--val-speaker",
                      "spk2", "--fractions", "1", "--label-seeds", "0", "--out", str(tmp_path / "nested.json")])
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "nested.json").read_text())["protocol"]["split"] == \
        "the validation speaker's pairs (--val-speaker)"
    for args, message in [(["raw"], "need --out"), ([str(tmp_path / "nowhere")], "is not a run folder"),
                          ([str(run), "--fractions", "0"], "must lie in (0, 1]"), (["raw", "--finetune", "--out", "y.json"], "no featurizer to fine-tune"),
                          ([str(run), "raw", "--out", str(tmp_path / "x.json")], "--out names one file")]:
        out = run_script(["evaluate_contrastive.py", *args])
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, (args, out.stderr)


def test_new_contrastive_flags_are_checked_and_kept_on_resume(v2_run, tmp_path):
    run, _ = v2_run
    base = ["train_contrastive.py", *SMALL_SYNTHETIC, "--runs-dir", str(tmp_path), "--max-epochs", "1",
            "--num-threads", "1"]
    for flags, message in [(["--feat-dropout", "1.5"], "must be in [0, 1]"),
                           (["--bias-init", "lots", "--loss", "nt_log"], "not a number"),
                           (["--bias-init", "-3"], "--bias-init needs --loss nt_log"),
                           (["--own-lr", "0.01"], "--own-lr needs --optimizer adamw"),
                           (["--head", "mlp-ln"], "invalid choice"), (["--augment", "lots"], "invalid choice"),
                           (["--select", "val_acc"], "invalid choice")]:
        out = run_script([*base, "--name", "bad", *flags])
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, (flags, out.stderr)
        assert not (tmp_path / "bad").exists()
    out = run_script(["train_contrastive.py", "--runs-dir", str(run.parent), "--name", "v2", "--resume",
                      "--max-epochs", "3", "--augment", "none"])
    assert out.returncode == 2 and "--augment none differs from the run's saved views" in out.stderr


def test_the_fine_tuned_classifier_starts_as_the_probe():
    from common.training.retrieval import fit_linear_probe
    from common.evaluation.label_efficiency import ProbedClassifier
    from common.nets.featurizers import AudioFeaturizer, ImageFeaturizer
    torch.manual_seed(0)
    image_f, audio_f = ImageFeaturizer().eval(), AudioFeaturizer().eval()
    image, audio, labels = torch.rand(40, 1, 28, 28), torch.randn(40, 1, 8000), torch.arange(40) % 10
    with torch.no_grad():
        feats = torch.cat([image_f(image), audio_f(audio)], 1)
    probe = fit_linear_probe(feats, labels, 20)
    model = ProbedClassifier(image_f, audio_f, probe).eval()
    with torch.no_grad():
        assert torch.allclose(model(image, audio), probe(feats), atol=1e-5)
    assert model.linear is not probe.linear  # fine-tuning moves its own copy


def test_probe_then_fine_tune_rows(v2_run, tmp_path):
    run, _ = v2_run
    out = run_script(["evaluate_contrastive.py", str(run), "--num-threads", "1", "--fractions", "0.1",
                      "--label-seeds", "0", "--finetune", "--finetune-fractions", "0.1", "--out",
                      str(tmp_path / "ft.json")])
    assert out.returncode == 0, out.stderr
    [row] = json.loads((tmp_path / "ft.json").read_text())["finetune"]
    assert row["method"] == "lp-ft" and row["lr"] in (1e-4, 1e-3) and row["step"] % 50 == 0
    assert row["n_val"] <= row["n_train"] and 0 <= row["test_acc"] <= 1
    assert "probe then fine-tune F=0.1" in out.stdout
