"""The unimodal training scripts end to end: outputs, determinism, resume, signals, NaN, refusals."""
import json
import signal
import subprocess
import sys

import pytest
import torch

from common.training.loop import EarlyStopping, selection_score
from conftest import ROOT, run_script, write_course, train_on_course

RUN_FILES = ["config.json", "metrics.json", "predictions_test.csv", "split_indices.json",
             "checkpoints/last.pt", "checkpoints/best.pt", "figures/curves.png", "figures/confusion_test.png",
             "figures/samples_train.png", "figures/samples_test.png"]


def train(script, course, runs_dir, *extra, name="run"):
    return train_on_course(script, course, runs_dir, *extra, name=name, batch_size=32, max_epochs=None)


def numbers(metrics):
    """The metrics that must repeat exactly (timings excluded)."""
    return {k: metrics[k] for k in ("best_epoch", "epochs_run", "val", "test", "params")}


@pytest.mark.parametrize("script", ["train_image.py", "train_audio.py"])
def test_tiny_run_leaves_every_output_and_repeats_exactly(script, larger_course, tmp_path):
    out = train(script, larger_course, tmp_path, "--max-epochs", "2")
    assert out.returncode == 0, out.stderr
    run = tmp_path / "run"
    for f in RUN_FILES:
        assert (run / f).exists(), f
    assert list(run.glob("events.out.tfevents.*")), "no TensorBoard events"
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("best_epoch", "epochs_run", "params", "train_seconds"):
        assert key in metrics
    assert metrics["epochs_run"] == 2 and metrics["dataset"] == "course"
    assert {"loss", "acc"} <= set(metrics["val"]) and {"loss", "acc", "confusion"} <= set(metrics["test"])
    assert sum(map(sum, metrics["test"]["confusion"])) == 30
    for ckpt in ("last.pt", "best.pt"):
        state = torch.load(run / "checkpoints" / ckpt, weights_only=True)  # plain tensors and types only
        assert "model" in state
    header = (run / "predictions_test.csv").read_text().splitlines()[0]
    assert header == "id,digit,label,recording"

    again = train(script, larger_course, tmp_path, "--max-epochs", "2", name="again")
    assert again.returncode == 0, again.stderr
    assert numbers(json.loads((tmp_path / "again" / "metrics.json").read_text())) == numbers(metrics)


def test_existing_run_folder_is_refused(larger_course, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    (tmp_path / "run" / "notes.txt").write_text("mine")  # not something a run writes: never deleted
    out = train("train_image.py", larger_course, tmp_path, "--max-epochs", "1")
    assert out.returncode == 2
    assert out.stderr.strip().startswith("error: run folder") and "--resume" in out.stderr
    assert (tmp_path / "run" / "config.json").read_text() == "{}"


def test_bad_flags_stop_with_one_line(larger_course, tmp_path):
    out = train("train_image.py", larger_course, tmp_path, "--val-fraction", "1.5")
    assert out.returncode == 2 and "must be between 0 and 1" in out.stderr
    out = train("train_image.py", larger_course, tmp_path, "--resume", name="never-started")
    assert out.returncode == 2 and "no checkpoints/last.pt" in out.stderr and "Traceback" not in out.stderr


def test_resume_refuses_changed_flags_and_other_data(larger_course, tmp_path):
    assert train("train_image.py", larger_course, tmp_path, "--max-epochs", "1").returncode == 0
    out = train("train_image.py", larger_course, tmp_path, "--resume", "--lr", "0.5")
    assert out.returncode == 2 and "--lr 0.5 differs from the run's saved 0.001" in out.stderr
    other = tmp_path / "other"  # the data may move, but it must be the same data
    write_course(other, n_train=100, n_test=30, test_labels=True, audio_len=7000)
    out = run_script(["train_image.py", "--data-root", str(other), "--runs-dir", str(tmp_path), "--name", "run",
                      "--resume", "--max-epochs", "2"])
    assert out.returncode == 2 and "was trained on data with fingerprint" in out.stderr


def assert_same_training_state(a_path, b_path):
    a = torch.load(a_path, weights_only=True)
    b = torch.load(b_path, weights_only=True)
    assert a["epoch"] == b["epoch"] and a["order"] is None and b["order"] is None
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    for p in a["optimizer"]["state"]:
        pa, pb = a["optimizer"]["state"][p], b["optimizer"]["state"][p]
        assert pa.keys() == pb.keys()
        for k in pa:
            assert torch.equal(pa[k], pb[k]), k
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"]) and torch.equal(a["rng"]["shuffle"], b["rng"]["shuffle"])
    assert a["early_stopping"] == b["early_stopping"]
    assert [h["val_loss"] for h in a["history"]] == [h["val_loss"] for h in b["history"]]


def test_resume_between_epochs_is_exact(larger_course, tmp_path):
    assert train("train_image.py", larger_course, tmp_path, "--max-epochs", "2", name="straight").returncode == 0
    assert train("train_image.py", larger_course, tmp_path, "--max-epochs", "1", name="split").returncode == 0
    out = train("train_image.py", larger_course, tmp_path, "--max-epochs", "2", "--resume", name="split")
    assert out.returncode == 0, out.stderr
    assert_same_training_state(tmp_path / "straight/checkpoints/last.pt", tmp_path / "split/checkpoints/last.pt")
    a = json.loads((tmp_path / "straight/metrics.json").read_text())
    b = json.loads((tmp_path / "split/metrics.json").read_text())
    assert numbers(a) == numbers(b)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(tmp_path / "split"))
    events.Reload()
    assert [e.step for e in events.Scalars("loss/val")] == [1, 2]  # the resumed curve has no duplicate points
    assert [e.value for e in events.Scalars("loss/val")] == pytest.approx([h["val_loss"] for h in
                                                                           torch.load(tmp_path / "split/checkpoints/last.pt", weights_only=True)["history"]])


def test_sigint_mid_training_saves_and_resumes_exactly(larger_course, tmp_path):
    """Ctrl-C lands inside an epoch: exit 130, a loadable last.pt, and resume ends where a straight run does."""
    common = ["--data", "course", "--data-root", str(larger_course), "--runs-dir", str(tmp_path),
              "--batch-size", "8", "--num-threads", "1", "--max-epochs", "3"]
    straight = run_script(["train_audio.py", *common, "--name", "straight"])
    assert straight.returncode == 0, straight.stderr
    proc = subprocess.Popen([sys.executable, "-u", "train_audio.py", *common, "--name", "cut"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:  # wait until epoch 1 is done, then interrupt epoch 2
        if line.startswith("epoch   1"):
            proc.send_signal(signal.SIGINT)
            break
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "--resume" in stdout
    cut = torch.load(tmp_path / "cut/checkpoints/last.pt", weights_only=True)
    assert cut["epoch"] == 1 and cut["order"] is not None  # saved in the middle of epoch 2
    assert 0 < cut["done_batches"] < len(cut["order"]) // 8 + 1
    out = run_script(["train_audio.py", "--runs-dir", str(tmp_path), "--name", "cut", "--resume"])
    assert out.returncode == 0, out.stderr
    assert_same_training_state(tmp_path / "straight/checkpoints/last.pt", tmp_path / "cut/checkpoints/last.pt")


def test_non_finite_loss_stops_the_run(larger_course, tmp_path):
    out = train("train_image.py", larger_course, tmp_path, "--lr", "1e30", "--max-epochs", "3")
    assert out.returncode == 1
    assert "non-finite training loss" in out.stderr and "epoch 1, batch" in out.stderr
    assert not (tmp_path / "run" / "checkpoints" / "best.pt").exists()


def test_early_stopping_counts_strict_improvements():
    es = EarlyStopping(patience=2)
    assert es.step(1.0, 1) and not es.should_stop
    assert not es.step(1.0, 2)  # equal is not better
    assert es.step(0.5, 3) and es.bad_epochs == 0
    assert not es.step(float("nan"), 4)  # NaN never becomes the best
    assert not es.step(0.7, 5) and es.should_stop
    assert es.best_epoch == 3 and es.best == 0.5
    clone = EarlyStopping(patience=2)
    clone.load_state_dict(es.state_dict())
    assert clone.state_dict() == es.state_dict()


def test_select_val_acc_keeps_the_most_accurate_epoch():
    """--select val_acc: the first epoch of the highest validation accuracy, whatever its loss."""
    es = EarlyStopping(patience=2)
    for epoch, val in enumerate([{"loss": 0.5, "acc": 0.80}, {"loss": 0.7, "acc": 0.90},
                                 {"loss": 0.4, "acc": 0.90}, {"loss": 0.3, "acc": 0.85}], start=1):
        es.step(selection_score(val, "val_acc"), epoch)
    assert es.best_epoch == 2 and es.best == -0.90 and es.should_stop
    assert selection_score({"loss": 0.4, "acc": 0.9}, "val_loss") == 0.4


@pytest.mark.parametrize("script", ["train_image.py", "train_multimodal.py"])
def test_select_flag_picks_best_pt_by_accuracy_and_is_kept_on_resume(script, larger_course, tmp_path):
    flags = ["--max-epochs", "6", "--lr", "3e-3", "--patience", "6"]
    for select in ("val_loss", "val_acc"):
        assert train(script, larger_course, tmp_path, *flags, "--select", select, name=select).returncode == 0
    by = {select: (json.loads((tmp_path / select / "metrics.json").read_text()),
                   torch.load(tmp_path / select / "checkpoints/last.pt", weights_only=True)["history"])
          for select in ("val_loss", "val_acc")}
    (m_loss, history), (m_acc, history_acc) = by["val_loss"], by["val_acc"]
    assert [h["val_loss"] for h in history] == [h["val_loss"] for h in history_acc]  # the same training
    losses, accs = [h["val_loss"] for h in history], [h["val_acc"] for h in history]
    assert m_loss["best_epoch"] == 1 + losses.index(min(losses))
    assert m_acc["best_epoch"] == 1 + accs.index(max(accs)) and m_acc["val"]["acc"] == max(accs)
    assert m_acc["best_epoch"] != m_loss["best_epoch"]  # on this course the two rules keep different epochs
    best = torch.load(tmp_path / "val_acc/checkpoints/best.pt", weights_only=True)
    assert (best["select"], best["score"], best["epoch"]) == ("val_acc", -max(accs), m_acc["best_epoch"])
    assert "val_loss" not in best  # the score is minus an accuracy, not a loss
    assert json.loads((tmp_path / "val_acc/config.json").read_text())["args"]["select"] == "val_acc"
    out = train(script, larger_course, tmp_path, "--resume", "--max-epochs", "7", "--select", "val_loss",
                name="val_acc")
    assert out.returncode == 2 and "--select val_loss differs from the run's saved val_acc" in out.stderr
    out = train(script, larger_course, tmp_path, "--max-epochs", "1", "--select", "test_acc", name="bad")
    assert out.returncode == 2 and "invalid choice" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "bad").exists()


def test_epoch_order_repeats_a_small_training_set_in_fresh_orders():
    from common.data import epoch_order, shuffle_order
    index = torch.arange(10, 24)  # 14 pairs
    one = epoch_order(index, torch.Generator().manual_seed(5))
    assert torch.equal(one, shuffle_order(index, torch.Generator().manual_seed(5)))  # default: the one-pass order
    order = epoch_order(index, torch.Generator().manual_seed(5), min_pairs=40)
    assert len(order) == 42  # ceil(40 / 14) = 3 passes
    passes = order.view(3, 14)
    for p in passes:
        assert sorted(p.tolist()) == index.tolist()  # every pass holds each pair once
    assert not torch.equal(passes[0], passes[1]) and torch.equal(passes[0], one)  # fresh orders, seeded
    assert torch.equal(order, epoch_order(index, torch.Generator().manual_seed(5), min_pairs=40))
    assert len(epoch_order(index, torch.Generator(), min_pairs=14)) == 14  # already enough: one pass


def test_epoch_pairs_sets_the_pairs_between_validations(larger_course, tmp_path):
    out = train("train_image.py", larger_course, tmp_path, "--max-epochs", "2", "--label-fraction", "0.2",
                "--epoch-pairs", "50", name="small")
    assert out.returncode == 0, out.stderr
    n_train = len(json.loads((tmp_path / "small" / "split_indices.json").read_text())["train"])
    history = torch.load(tmp_path / "small" / "checkpoints" / "last.pt", weights_only=True)["history"]
    passes = -(-50 // n_train)
    assert passes > 1 and [h["train_samples"] for h in history] == [passes * n_train] * 2
    plain = train("train_image.py", larger_course, tmp_path, "--max-epochs", "1", "--label-fraction", "0.2",
                  name="plain")
    assert plain.returncode == 0, plain.stderr
    plain_history = torch.load(tmp_path / "plain" / "checkpoints" / "last.pt", weights_only=True)["history"]
    assert [h["train_samples"] for h in plain_history] == [n_train]
    bad = train("train_image.py", larger_course, tmp_path, "--epoch-pairs", "-1", name="bad")
    assert bad.returncode == 2 and "from 0 to 10,000,000" in bad.stderr and not (tmp_path / "bad").exists()


def test_label_fraction_keeps_a_class_balanced_seeded_share(larger_course, tmp_path):
    from common.data import class_balanced_subset
    labels = torch.arange(1000) % 10
    index = torch.arange(0, 1000, 2)  # 50 of each of the even classes
    kept = class_balanced_subset(index, labels, 0.1, seed=3)
    assert torch.bincount(labels[kept], minlength=10).tolist() == [10, 0, 10, 0, 10, 0, 10, 0, 10, 0]
    assert set(kept.tolist()) <= set(index.tolist()) and torch.equal(kept, kept.sort().values)
    assert torch.equal(kept, class_balanced_subset(index, labels, 0.1, seed=3))
    assert not torch.equal(kept, class_balanced_subset(index, labels, 0.1, seed=4))
    assert torch.equal(class_balanced_subset(index, labels, 1.0, seed=3), index)
    assert len(class_balanced_subset(index, labels, 0.001, seed=3)) == 5  # at least one per class present

    assert train("train_image.py", larger_course, tmp_path, "--max-epochs", "1", name="all").returncode == 0
    out = train("train_image.py", larger_course, tmp_path, "--max-epochs", "1", "--label-fraction", "0.5", name="half")
    assert out.returncode == 0, out.stderr
    every, half = (json.loads((tmp_path / n / "split_indices.json").read_text()) for n in ("all", "half"))
    assert half["val"] == every["val"] and half["test"] == every["test"]
    assert set(half["train"]) < set(every["train"]) and abs(len(half["train"]) - len(every["train"]) / 2) <= 5
    bad = train("train_image.py", larger_course, tmp_path, "--label-fraction", "0", name="none")
    assert bad.returncode == 2 and "must be in (0, 1]" in bad.stderr
