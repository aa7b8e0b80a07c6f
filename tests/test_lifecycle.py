"""common/training/lifecycle.py: claiming a run's name, what counts as a failed start, and the resume rules."""
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch

from common.training.lifecycle import _failed_start, claim_run_name, resume_command
from common.training.loop import TrainingError, load_checkpoint, resolve_precision

from conftest import FAST, ROOT, one_line_error, run_script, train_named, train_on_course, write_course

HOLD = """
import sys, time
sys.path.insert(0, {root!r})
from common.training.lifecycle import claim_run_name
assert claim_run_name({runs!r}, "r")
print("held", flush=True)
time.sleep(30)
"""


def test_a_claimed_name_is_refused_to_another_process_and_freed_when_it_ends(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD.format(root=ROOT, runs=str(tmp_path))],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        probe = [sys.executable, "-c", f"import sys; sys.path.insert(0, {ROOT!r}); from common.training.lifecycle import "
                                       f"claim_run_name; print(claim_run_name({str(tmp_path)!r}, 'r'), "
                                       f"claim_run_name({str(tmp_path)!r}, 'other'))"]
        assert subprocess.run(probe, capture_output=True, text=True, timeout=60).stdout.split() == ["False", "True"]
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    assert subprocess.run(probe, capture_output=True, text=True, timeout=60).stdout.split() == ["True", "True"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.claim", ".r.claim"]  # the claims, nothing else


def test_a_claim_is_met_through_a_symlinked_runs_folder_and_under_another_tmpdir(tmp_path):
    """The claim lives in the runs folder, resolved: a second spelling of the folder, or a process with
    its own TMPDIR (a Slurm job), is refused while the first holds it."""
    runs = tmp_path / "runs"
    runs.mkdir()
    os.symlink(runs, tmp_path / "alias")
    holder = subprocess.Popen([sys.executable, "-c", HOLD.format(root=ROOT, runs=str(runs))],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        probe = [sys.executable, "-c", f"import sys; sys.path.insert(0, {ROOT!r}); from common.training.lifecycle "
                                       f"import claim_run_name; print(claim_run_name({str(tmp_path / 'alias')!r}, 'r'))"]
        other_tmp = tmp_path / "tmp2"
        other_tmp.mkdir()
        for env in (None, {**os.environ, "TMPDIR": str(other_tmp)}):
            out = subprocess.run(probe, capture_output=True, text=True, timeout=60, env=env)
            assert out.stdout.split() == ["False"], out.stderr
    finally:
        holder.kill()
        holder.wait()


def test_a_failed_start_is_only_what_a_run_writes_before_its_first_checkpoint(tmp_path):
    run = tmp_path / "r"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "split_indices.json").write_text("{}")
    (run / "events.out.tfevents.1.host").write_text("")
    assert _failed_start(str(run))
    (run / "checkpoints" / "last.pt").write_text("x")
    assert not _failed_start(str(run))  # a checkpoint: --resume's to continue, never deleted
    (run / "checkpoints" / "last.pt").unlink()
    (run / "notes.txt").write_text("mine")
    assert not _failed_start(str(run))  # a file the run did not write: never deleted
    assert claim_run_name(str(tmp_path), "r")  # in this process: held, and a second ask is a yes
    assert claim_run_name(str(tmp_path), "r")


RUN_FILES = ["config.json", "metrics.json", "predictions_test.csv", "split_indices.json",
             "checkpoints/last.pt", "checkpoints/best.pt", "figures/curves.png", "figures/confusion_test.png",
             "figures/samples_train.png", "figures/samples_test.png"]


def train(script, course, runs_dir, *extra, name="run"):
    return train_on_course(script, course, runs_dir, *extra, name=name, batch_size=32, max_epochs=None)


def numbers(metrics):
    """The metrics that must repeat exactly (timings excluded)."""
    return {k: metrics[k] for k in ("best_epoch", "epochs_run", "val", "test", "params")}


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
    assert header == "id,digit,label"  # course files name no recordings

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


def train_two_epochs(course, runs_dir, name, *extra, script="train_multimodal.py"):
    return train_on_course(script, course, runs_dir, *extra, name=name, max_epochs=2)


def test_precision_reaches_config_and_a_bf16_run_trains(labelled_course, tmp_path):
    out = train_two_epochs(labelled_course, tmp_path, "bf16", "--precision", "bf16")
    assert out.returncode == 0, out.stderr
    config = json.loads((tmp_path / "bf16" / "config.json").read_text())
    assert config["precision"] == "bf16" and config["args"]["precision"] == "bf16"
    metrics = json.loads((tmp_path / "bf16" / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and math.isfinite(metrics["val"]["loss"])
    best = torch.load(tmp_path / "bf16" / "checkpoints" / "best.pt", weights_only=True)
    assert all(t.dtype == torch.float32 for t in best["model"].values() if t.is_floating_point())
    start = torch.load(tmp_path / "bf16" / "checkpoints" / "last.pt", weights_only=True)
    assert len(start["history"]) == 2 and start["history"][1]["train_loss"] != start["history"][0]["train_loss"]

    auto = train_two_epochs(labelled_course, tmp_path, "auto")
    assert auto.returncode == 0, auto.stderr
    used = json.loads((tmp_path / "auto" / "config.json").read_text())["precision"]
    assert used == resolve_precision("auto", torch.device("cpu"))


@pytest.mark.parametrize("script", ["train_image.py", "train_multimodal.py"])
def test_fp32_runs_repeat_bit_for_bit(script, labelled_course, tmp_path):
    for name in ("a", "b"):
        out = train_two_epochs(labelled_course, tmp_path, name, "--precision", "fp32", script=script)
        assert out.returncode == 0, out.stderr
    a, b = (torch.load(tmp_path / n / "checkpoints" / "last.pt", weights_only=True) for n in ("a", "b"))
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    ma, mb = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("a", "b"))
    assert ma["val"] == mb["val"] and ma["test"] == mb["test"]


def test_resume_with_the_wrong_script_names_the_right_one(finished):
    out = run_script(["train_audio.py", "--runs-dir", str(finished), "--name", "mm", "--resume"])
    line = one_line_error(out)
    assert "'multimodal' run, not 'audio'" in line and "train_multimodal.py" in line


@pytest.mark.parametrize("script", ["train_image.py", "train_contrastive.py"])
def test_unusable_runs_dir_fails_before_the_data_loads(script, labelled_course, tmp_path):
    (tmp_path / "file").write_text("x")
    out = train_named(script, labelled_course, tmp_path / "file" / "runs", "r", "--max-epochs", "1")
    assert "is a file, not a folder" in one_line_error(out)
    assert "dataset" not in out.stdout  # nothing was loaded
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert "is not writable" in one_line_error(train_named(script, labelled_course, locked, "r"))


@pytest.mark.parametrize("name", ["../escape", "a/b", "", ".."])
def test_run_names_stay_inside_runs_dir(name, labelled_course, tmp_path):
    runs = tmp_path / "runs"
    out = train_named("train_image.py", labelled_course, runs, name, "--max-epochs", "1")
    assert out.returncode == 2 and "must be a plain folder name" in out.stderr
    assert not (tmp_path / "escape").exists() and not runs.exists()


def test_a_run_that_died_before_its_first_checkpoint_is_started_again(labelled_course, tmp_path):
    out = train_named("train_image.py", labelled_course, tmp_path, "nan", "--lr", "1e30", "--max-epochs", "2")
    assert out.returncode == 1 and "non-finite training loss" in out.stderr
    assert (tmp_path / "nan" / "config.json").exists() and not (tmp_path / "nan" / "checkpoints").exists()
    again = train_named("train_image.py", labelled_course, tmp_path, "nan", "--max-epochs", "1")
    assert again.returncode == 0, again.stderr
    assert "never reached a checkpoint" in again.stdout and "starting it again" in again.stdout
    assert json.loads((tmp_path / "nan" / "config.json").read_text())["args"]["lr"] == 0.001
    assert (tmp_path / "nan" / "metrics.json").exists()


def test_a_best_checkpoint_missing_or_damaged_is_written_again_from_the_last_when_it_ended_the_best_epoch(
        labelled_course, tmp_path):
    """last.pt is written before best.pt at the end of each epoch: a run stopped between the two
    (kill -9, a full disk) resumes with best.pt written again from last.pt; a damaged best.pt of an
    earlier epoch, whose weights no file holds any more, is refused in one line before any training."""
    assert train_named("train_image.py", labelled_course, tmp_path, "r", "--max-epochs", "1").returncode == 0
    os.remove(tmp_path / "r" / "metrics.json")  # as if stopped before the test
    os.remove(tmp_path / "r" / "checkpoints" / "best.pt")  # ... and between last.pt and best.pt
    out = run_script(["train_image.py", "--runs-dir", str(tmp_path), "--name", "r", "--resume", "--max-epochs", "1",
                      "--retest"])
    assert out.returncode == 0, out.stderr
    assert "best.pt held no checkpoint; written again from last.pt" in out.stdout
    assert torch.load(tmp_path / "r" / "checkpoints" / "best.pt", weights_only=True)["epoch"] == 1
    # the best epoch is 1 (a tie keeps the earlier epoch under --select val_acc) and last.pt is epoch 2
    assert train_named("train_image.py", labelled_course, tmp_path, "d", "--max-epochs", "2", "--lr", "1e-12",
                       "--select", "val_acc").returncode == 0
    assert json.loads((tmp_path / "d" / "metrics.json").read_text())["best_epoch"] == 1
    os.remove(tmp_path / "d" / "metrics.json")
    (tmp_path / "d" / "checkpoints" / "best.pt").write_bytes(b"PK\x03\x04 damaged")
    out = run_script(["train_image.py", "--runs-dir", str(tmp_path), "--name", "d", "--resume", "--max-epochs", "3"])
    line = one_line_error(out, code=1)
    assert "best.pt does not hold the best epoch (1)" in line
    assert "epoch   3" not in out.stdout  # refused before any training


def test_a_first_checkpoint_that_was_never_finished_counts_as_a_failed_start(labelled_course, tmp_path):
    """kill -9 during the first save leaves a temp file in checkpoints/: the same command starts again."""
    assert train_named("train_image.py", labelled_course, tmp_path, "r", "--max-epochs", "1").returncode == 0
    for name in ("metrics.json", "predictions_test.csv", "split_indices.json"):
        os.remove(tmp_path / "r" / name)
    for folder in ("figures", "hparams"):  # written when a run finishes, not before its first checkpoint
        shutil.rmtree(tmp_path / "r" / folder, ignore_errors=True)
    for name in os.listdir(tmp_path / "r" / "checkpoints"):
        os.remove(tmp_path / "r" / "checkpoints" / name)
    (tmp_path / "r" / "checkpoints" / ".tmp-abc.pt").write_bytes(b"")
    again = train_named("train_image.py", labelled_course, tmp_path, "r", "--max-epochs", "1")
    assert again.returncode == 0, again.stderr
    assert "never reached a checkpoint" in again.stdout


def test_resume_of_a_finished_run_changes_nothing_unless_asked(finished):
    run = finished / "img"
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    out = run_script(["train_image.py", "--runs-dir", str(finished), "--name", "img", "--resume"])
    assert out.returncode == 0 and "is finished" in out.stdout and "--retest" in out.stdout
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before
    metrics = json.loads((run / "metrics.json").read_text())
    out = run_script(["train_image.py", "--runs-dir", str(finished), "--name", "img", "--resume", "--retest"])
    assert out.returncode == 0, out.stderr
    assert (run / "metrics.json").stat().st_mtime_ns != before[run / "metrics.json"]
    assert json.loads((run / "metrics.json").read_text())["test"] == metrics["test"]


@pytest.mark.parametrize("limit", ["3", "20"])
def test_limits_that_leave_a_split_too_small_are_refused_before_the_data(limit, labelled_course, tmp_path):
    out = train_named("train_image.py", labelled_course, tmp_path, "r", "--limit", limit)
    assert "each split needs at least 10" in one_line_error(out)
    assert "dataset" not in out.stdout and not (tmp_path / "r").exists()
    assert train_named("train_image.py", labelled_course, tmp_path, "ok", "--limit", "60", "--max-epochs", "1").returncode == 0


def test_a_run_held_by_a_live_process_is_neither_replaced_nor_resumed(labelled_course, tmp_path):
    import subprocess
    import sys
    out = train_named("train_image.py", labelled_course, tmp_path, "r", "--lr", "1e30", "--max-epochs", "2")
    assert out.returncode == 1  # died in epoch 1: a folder with config.json and nothing else of note
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time\n"
        f"f = open({str(tmp_path / 'r' / 'config.json')!r})\n"
        "fcntl.flock(f, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(60)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        refused = train_named("train_image.py", labelled_course, tmp_path, "r", "--max-epochs", "1")
        assert "is being trained by another process" in one_line_error(refused)
        assert (tmp_path / "r" / "config.json").exists()
    finally:
        holder.kill()
        holder.wait()
    again = train_named("train_image.py", labelled_course, tmp_path, "r", "--max-epochs", "1")
    assert again.returncode == 0 and "starting it again" in again.stdout


def test_only_what_a_run_writes_counts_as_a_failed_start(labelled_course, tmp_path):
    for extra in ("config.json.orig", "checkpoints_mine/x.pt", "split_indices.json.notes"):
        folder = tmp_path / extra.split("/")[0].replace(".", "_")
        (folder / extra).parent.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text("{}")
        (folder / extra).write_text("mine")
        out = train_named("train_image.py", labelled_course, tmp_path, folder.name, "--max-epochs", "1")
        assert "already exists" in one_line_error(out)
        assert (folder / extra).read_text() == "mine"


def test_1_two_starts_of_one_name_do_not_share_its_folder(labelled_course, tmp_path):
    """Two trainings of one run folder at once, the second through a symlink to the runs folder and
    with a TMPDIR of its own: exactly one trains, the other is refused in one line."""
    runs = tmp_path / "runs"
    runs.mkdir()
    os.symlink(runs, tmp_path / "alias")
    (tmp_path / "tmp2").mkdir()
    common = [sys.executable, "train_multimodal.py", "--data", "course", "--data-root", str(labelled_course),
              "--name", "race", "--max-epochs", "2", *FAST]
    first = subprocess.Popen([*common, "--runs-dir", str(runs), "--fusion", "concat"], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen([*common, "--runs-dir", str(tmp_path / "alias"), "--fusion", "late", "--seed", "7"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "TMPDIR": str(tmp_path / "tmp2")})
    results = [(p.wait(timeout=300), p.communicate()[1]) for p in (first, second)]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    [refusal] = [err for code, err in results if code == 2]
    assert "Traceback" not in refusal and refusal.strip().splitlines()[-1].startswith("error: run folder")
    config = json.loads((runs / "race/config.json").read_text())
    metrics = json.loads((runs / "race/metrics.json").read_text())
    assert (config["args"]["fusion"], config["args"]["seed"]) == (metrics["fusion"], metrics["seed"])
    assert len(list((runs / "race").glob("events.out.tfevents.*"))) == 1


def test_12_sizes_beyond_reason_are_refused_at_once(labelled_course, tmp_path):
    out = train_named("train_audio.py", labelled_course, tmp_path, "r", "--audio-frontend", "mel", "--mel-channels", "100000",
                "100000")
    assert out.returncode == 2 and "from 1 to 1,024" in out.stderr
    out = train_named("train_image.py", labelled_course, tmp_path, "r", "--epoch-pairs", "1000000000000")
    assert out.returncode == 2 and "from 0 to 10,000,000" in out.stderr
    assert not (tmp_path / "r").exists()


def test_4_a_full_disk_while_saving_a_checkpoint_is_one_line_that_says_what_to_do(tmp_path, monkeypatch):
    import torch as real_torch

    from common.training.loop import save_checkpoint
    save_checkpoint(str(tmp_path / "last.pt"), epoch=1)

    def full_disk(obj, path):
        with open(path, "wb") as f:
            f.write(b"PK")  # a torn write, as torch leaves it
        raise RuntimeError("[enforce fail at inline_container.cc:783] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed; unexpected pos 64 vs 0")
    monkeypatch.setattr(real_torch, "save", full_disk)
    with pytest.raises(TrainingError) as e:
        save_checkpoint(str(tmp_path / "last.pt"), epoch=2)
    assert "cannot write" in str(e.value) and "--resume continues from it" in str(e.value)
    assert load_checkpoint(str(tmp_path / "last.pt"))["epoch"] == 1  # the previous checkpoint, intact
    assert not list(tmp_path.glob(".tmp-*"))  # no torn temp file left
    with pytest.raises(TrainingError, match="--resume continues from last.pt"):  # best.pt comes after last.pt
        save_checkpoint(str(tmp_path / "best.pt"), epoch=1)
    with pytest.raises(TrainingError, match="no checkpoint yet: starting it again"):
        save_checkpoint(str(tmp_path / "fresh" / "last.pt"), epoch=1)


def args(**kw):
    return SimpleNamespace(**{"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.1, **kw})


RECIPE = ["--optimizer", "adamw", "--weight-decay", "0.01", "--warmup-epochs", "0.5", "--schedule", "cosine",
          "--clip-grad", "1.0"]


@pytest.mark.parametrize("script, extra", [("train_image.py", []), ("train_audio.py", ["--speed-perturb", "0.1"]),
                                           ("train_multimodal.py", ["--speed-perturb", "0.1"])])
def test_the_flags_train_and_resume_exactly(script, extra, larger_course, tmp_path):
    """Stopped by Ctrl-C after epoch 1 of 3 and resumed: the warm-up and the cosine go on where they were,
    and so do the speed perturbation's draws."""
    common = ["--data", "course", "--data-root", str(larger_course), "--runs-dir", str(tmp_path), "--batch-size", "8",
              "--num-threads", "1", "--max-epochs", "3", *RECIPE, *extra]
    assert run_script([script, *common, "--name", "straight"]).returncode == 0
    proc = subprocess.Popen([sys.executable, "-u", script, *common, "--name", "cut"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("epoch   1"):
            proc.send_signal(signal.SIGINT)
            break
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    out = run_script([script, "--runs-dir", str(tmp_path), "--name", "cut", "--resume"])
    assert out.returncode == 0, out.stderr
    assert_same_training_state(tmp_path / "straight/checkpoints/last.pt", tmp_path / "cut/checkpoints/last.pt")
    last = torch.load(tmp_path / "straight/checkpoints/last.pt", weights_only=True)
    groups = last["optimizer"]["param_groups"]
    assert {g["name"] for g in groups} == {"decay", "no_decay"}
    assert groups[0]["lr"] < groups[0]["base_lr"] * 0.1  # the cosine is near its end after the last step
    config = json.loads((tmp_path / "straight/config.json").read_text())["args"]
    assert (config["optimizer"], config["weight_decay"], config["schedule"]) == ("adamw", 0.01, "cosine")


def test_a_resume_with_more_epochs_keeps_the_schedule_it_started(larger_course, tmp_path):
    assert train("train_image.py", larger_course, tmp_path, "--max-epochs", "1", *RECIPE).returncode == 0
    first = torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)["optimizer"]["param_groups"][0]
    assert train("train_image.py", larger_course, tmp_path, "--max-epochs", "2", "--resume").returncode == 0
    group = torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)["optimizer"]["param_groups"][0]
    assert group["total_steps"] == first["total_steps"] == 3  # 75 training pairs in batches of 32, one epoch
    assert group["lr"] == 0.0  # past the end of its cosine: the second epoch trains at lr 0


def test_resume_refuses_a_changed_recipe_flag(larger_course, tmp_path):
    assert train("train_image.py", larger_course, tmp_path, "--max-epochs", "1").returncode == 0
    out = train("train_image.py", larger_course, tmp_path, "--resume", "--max-epochs", "2", "--schedule", "cosine")
    assert out.returncode == 2 and "--schedule cosine differs from the run's saved constant" in out.stderr


def test_resume_given_part_of_the_runs_own_flags_judges_them_against_the_saved_ones(larger_course, tmp_path):
    """`--resume --weight-decay 0.1` on a run trained with AdamW at 0.1: the saved flags decide, not the
    defaults the other half of the combination has on this command line."""
    assert train("train_image.py", larger_course, tmp_path, "--max-epochs", "1", "--optimizer", "adamw",
                 "--weight-decay", "0.1").returncode == 0
    out = train("train_image.py", larger_course, tmp_path, "--resume", "--max-epochs", "2", "--weight-decay", "0.1")
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "run/metrics.json").read_text())["epochs_run"] == 2
    out = train("train_image.py", larger_course, tmp_path, "--resume", "--max-epochs", "3", "--weight-decay", "0.2")
    assert out.returncode == 2 and "--weight-decay 0.2 differs from the run's saved 0.1" in out.stderr


def test_resume_refuses_a_flag_the_run_predates(larger_course, tmp_path):
    """A run saved before --warmup-epochs existed trained without warm-up; asking for one on resume is refused."""
    assert train("train_image.py", larger_course, tmp_path, "--max-epochs", "1").returncode == 0
    config_path = tmp_path / "run/config.json"
    config = json.loads(config_path.read_text())
    del config["args"]["warmup_epochs"]
    config_path.write_text(json.dumps(config))
    out = train("train_image.py", larger_course, tmp_path, "--resume", "--max-epochs", "2", "--warmup-epochs", "1")
    assert out.returncode == 2 and "before --warmup-epochs existed" in out.stderr
    out = train("train_image.py", larger_course, tmp_path, "--resume", "--max-epochs", "2")  # without it: fine
    assert out.returncode == 0, out.stderr


def test_the_resume_hint_quotes_every_word_for_the_shell(monkeypatch):
    """A runs folder with a space or shell syntax in it comes back as one word, never as a command."""
    monkeypatch.setattr(sys, "argv", ["train_image.py"])
    args = SimpleNamespace(runs_dir="my runs/$(touch pwned)", name="a;b")
    words = shlex.split(resume_command(args))
    assert words == ["python", "train_image.py", "--runs-dir", "my runs/$(touch pwned)", "--name", "a;b", "--resume"]


def test_a_symlinked_folder_inside_a_run_folder_is_refused(labelled_course, tmp_path):
    """attacker/checkpoints -> victim/checkpoints: --resume would write the victim's best.pt and last.pt."""
    assert train_named("train_image.py", labelled_course, tmp_path, "victim", "--max-epochs", "1").returncode == 0
    assert train_named("train_image.py", labelled_course, tmp_path, "attacker", "--max-epochs", "1").returncode == 0
    os.remove(tmp_path / "attacker" / "metrics.json")
    shutil.rmtree(tmp_path / "attacker" / "checkpoints")
    os.symlink(tmp_path / "victim" / "checkpoints", tmp_path / "attacker" / "checkpoints")
    before = (tmp_path / "victim" / "checkpoints" / "best.pt").read_bytes()
    out = run_script(["train_image.py", "--runs-dir", str(tmp_path), "--name", "attacker", "--resume",
                      "--max-epochs", "2"])
    assert "is a symbolic link" in one_line_error(out)
    assert (tmp_path / "victim" / "checkpoints" / "best.pt").read_bytes() == before
