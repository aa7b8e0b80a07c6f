"""train_contrastive.py end to end on a tiny course-format dataset: outputs, learned tau, resume, --init-from."""
import json
import math

import pytest
import torch

from common.nets.models import build_multimodal
from common.training.init_from import init_featurizers, load_featurizer_weights
from common.training.loop import load_checkpoint, set_seed

from conftest import one_line_error, train_named, train_on_course

RUN_FILES = ["config.json", "metrics.json", "split_indices.json", "checkpoints/last.pt", "checkpoints/best.pt",
             "figures/curves.png", "figures/similarity_test.png"]
TAU_MIN, TAU_MAX = 0.01, 1.0  # the default clamp of a learned tau (1/tau in [1, 100])


def train(course, runs_dir, name, *extra):
    return train_on_course("train_contrastive.py", course, runs_dir, *extra, name=name, max_epochs=None, process=True)


@pytest.fixture(scope="module")
def xent_run(labelled_course, tmp_path_factory):
    """One NT-Xent run of two epochs, shared by the tests that only read it."""
    runs = tmp_path_factory.mktemp("runs")
    out = train(labelled_course, runs, "straight", "--loss", "nt_xent", "--max-epochs", "2")
    assert out.returncode == 0, out.stderr
    return runs / "straight", out.stdout


def check_outputs(run, loss):
    for f in RUN_FILES:
        assert (run / f).exists(), f
    assert list(run.glob("events.out.tfevents.*")), "no TensorBoard events"
    m = json.loads((run / "metrics.json").read_text())
    assert m["model"] == "contrastive" and m["loss"] == loss and m["dataset"] == "course"
    assert m["epochs_run"] == 2 and 1 <= m["best_epoch"] <= 2
    assert math.isfinite(m["val"]["loss"])
    retrieval = m["test"]["retrieval"]
    assert retrieval["n"] == 20  # the labelled course's 20 test pairs
    for key in ("recall@1_img2aud", "recall@1_aud2img", "recall@1_ceiling", "digit@1_img2aud", "digit@1_aud2img",
                "digit@5_img2aud", "digit@5_aud2img"):
        assert 0.0 <= retrieval[key] <= 1.0, key
    assert set(m["test"]["probe"]) == {"image", "audio", "both"}
    for value in m["test"]["probe"].values():
        assert 0.0 <= value <= 1.0
    for ckpt in ("last.pt", "best.pt"):
        state = torch.load(run / "checkpoints" / ckpt, weights_only=True)  # plain tensors and types only
        assert any(k.startswith("image_featurizer.") for k in state["model"])
        assert any(k.startswith("audio_featurizer.") for k in state["model"])
    return m


def test_nt_xent_run_leaves_every_output(xent_run):
    run, stdout = xent_run
    m = check_outputs(run, "nt_xent")
    assert m["tau"] == pytest.approx(0.1) and m["bias"] is None
    assert "contrastive nt_xent" in stdout.strip().splitlines()[-1]


def test_nt_log_with_learned_tau_and_bias(labelled_course, tmp_path):
    out = train(labelled_course, tmp_path, "siglip", "--loss", "nt_log", "--learn-tau", "--learn-bias",
                "--tau", "0.5", "--lr", "0.01", "--max-epochs", "2")
    assert out.returncode == 0, out.stderr
    m = check_outputs(tmp_path / "siglip", "nt_log")
    assert TAU_MIN <= m["tau"] <= TAU_MAX
    assert m["tau"] != pytest.approx(0.5, abs=1e-6), "tau was not learned"
    assert m["bias"] != pytest.approx(-math.log(127.0), abs=1e-6), "bias was not learned"
    best = torch.load(tmp_path / "siglip/checkpoints/best.pt", weights_only=True)["model"]
    stored = best["loss.temperature.log_inv_tau"]
    effective = math.exp(-float(stored.clamp(math.log(1 / TAU_MAX), math.log(1 / TAU_MIN))))
    assert effective == pytest.approx(m["tau"])
    assert float(best["loss.bias"]) == pytest.approx(m["bias"])


def test_learn_bias_needs_nt_log(labelled_course, tmp_path):
    out = train(labelled_course, tmp_path, "bad", "--learn-bias")
    assert out.returncode == 2 and out.stderr.strip().startswith("error:") and "nt_log" in out.stderr
    assert not (tmp_path / "bad").exists()


def test_resume_between_epochs_is_exact(xent_run, labelled_course, tmp_path):
    straight, _ = xent_run
    assert train(labelled_course, tmp_path, "split", "--loss", "nt_xent", "--max-epochs", "1").returncode == 0
    out = train(labelled_course, tmp_path, "split", "--max-epochs", "2", "--resume")
    assert out.returncode == 0, out.stderr
    a = torch.load(straight / "checkpoints/last.pt", weights_only=True)
    b = torch.load(tmp_path / "split/checkpoints/last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2 and a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    ma = json.loads((straight / "metrics.json").read_text())
    mb = json.loads((tmp_path / "split/metrics.json").read_text())
    for key in ("best_epoch", "epochs_run", "val", "test", "tau"):
        assert ma[key] == mb[key], key


def test_best_checkpoint_initialises_a_multimodal_model(xent_run):
    run, _ = xent_run
    ckpt = torch.load(run / "checkpoints/best.pt", weights_only=True)
    assert ckpt["kind"] == "contrastive"
    model = build_multimodal("concat")
    assert sorted(load_featurizer_weights(model, ckpt["model"])) == ["audio", "image"]
    assert torch.equal(model.image_featurizer.fc.weight, ckpt["model"]["image_featurizer.fc.weight"])
    assert torch.equal(model.audio_featurizer.conv[0].weight, ckpt["model"]["audio_featurizer.conv.0.weight"])


def test_init_from_a_contrastive_checkpoint_changes_the_featurizers_and_nothing_else(xent_run):
    run, _ = xent_run
    path = run / "checkpoints/best.pt"
    source = torch.load(path, weights_only=True)["model"]
    set_seed(7)
    scratch = build_multimodal("concat").state_dict()
    rng_after_scratch = torch.get_rng_state()
    set_seed(7)
    model = build_multimodal("concat")
    assert init_featurizers(model, [str(path)], load_checkpoint) == {"image": str(path), "audio": str(path)}
    # loading draws no random numbers, so the training that follows (batches, dropout) is unchanged too
    assert torch.equal(torch.get_rng_state(), rng_after_scratch)
    changed = []
    for key, value in model.state_dict().items():
        if key.startswith(("image_featurizer.", "audio_featurizer.")):
            assert torch.equal(value, source[key]), key
            changed.append(not torch.equal(value, scratch[key]))
        else:  # the fusion and the classifier: as from scratch
            assert torch.equal(value, scratch[key]), key
    assert changed and all(changed)


def test_a_pre_trained_run_records_its_source_and_the_report_groups_by_it(xent_run, labelled_course, tmp_path):
    """The source run has a custom name ("straight", no -s<seed>): the name is recorded as it is."""
    from conftest import run_script
    run, _ = xent_run
    out = run_script(["train_multimodal.py", "--data", "course", "--data-root", str(labelled_course), "--runs-dir",
                      str(tmp_path), "--name", "pre-s0", "--batch-size", "16", "--num-threads", "1", "--max-epochs",
                      "1", "--init-from", str(run / "checkpoints/best.pt")])
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "pre-s0/config.json").read_text())["init_from_source"] == "straight"
    import report
    [row] = report.read_runs(str(tmp_path))[0]
    assert dict(row["config"])["init_from"] == "straight"


def test_contrastive_pre_training_refuses_a_label_fraction(labelled_course, tmp_path):
    out = train_named("train_contrastive.py", labelled_course, tmp_path, "c", "--label-fraction", "0.5")
    assert "uses no labels" in one_line_error(out) and not (tmp_path / "c").exists()


def test_mlp_bn_refuses_an_epoch_whose_last_batch_is_one_pair_also_under_epoch_pairs(labelled_course, tmp_path):
    """48 training pairs passed over 3 times (--epoch-pairs 130) make 144 pairs: batches of 13 leave one."""
    out = train_on_course("train_contrastive.py", labelled_course, tmp_path, "--head", "mlp-bn", "--epoch-pairs",
                          "130", batch_size=13)
    assert out.returncode == 2 and "an epoch of 144 training pairs leaves a last batch of one" in out.stderr
