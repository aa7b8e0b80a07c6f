"""common/training/loop.py's optimizer, schedule and clipping pieces (--optimizer, --warmup-epochs, --schedule,
--clip-grad), and what every train script does with them: the defaults change nothing, a resume continues
the schedule exactly, a bad value is one line."""
import csv
import json
import math
import os
import signal
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from common.training.loop import LRSchedule, clip_gradients, lr_factor, make_optimizer, parameter_groups
from conftest import ROOT, run_script, train_on_course
from test_training import assert_same_training_state


class WithTemperature(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.norm = nn.BatchNorm1d(3)
        self.loss = nn.Module()
        self.loss.bias = nn.Parameter(torch.tensor(-2.0))


def args(**kw):
    return SimpleNamespace(**{"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.1, **kw})


def test_weight_matrices_decay_and_the_named_parameters_get_their_own_lr():
    model = WithTemperature()
    groups = {g["name"]: g for g in parameter_groups(model, 1e-3, 0.1, own_lr=1e-2, own_names=("loss.bias",))}
    assert [p.shape for p in groups["decay"]["params"]] == [model.fc.weight.shape]
    assert groups["decay"]["weight_decay"] == 0.1
    # the linear bias and both BatchNorm parameters: no decay
    assert {id(p) for p in groups["no_decay"]["params"]} == {id(model.fc.bias), id(model.norm.weight),
                                                             id(model.norm.bias)}
    assert groups["no_decay"]["weight_decay"] == 0.0
    assert groups["own_lr"]["params"] == [model.loss.bias] and groups["own_lr"]["lr"] == 1e-2
    assert groups["own_lr"]["weight_decay"] == 0.0
    optimizer = make_optimizer(model, args(), own_names=("loss.bias",), own_lr=1e-2)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert sorted(g["lr"] for g in optimizer.param_groups) == [1e-3, 1e-3, 1e-2]
    # a weight decay step shrinks the matrix, leaves the bias term and the norm alone when their gradient is 0
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer.step()
    after = dict(model.named_parameters())
    assert torch.allclose(after["fc.weight"], before["fc.weight"] * (1 - 1e-3 * 0.1))
    for name in ("fc.bias", "norm.weight", "norm.bias", "loss.bias"):
        assert torch.equal(after[name], before[name]), name


def test_the_default_optimizer_is_the_exams_adam_over_one_group():
    model = WithTemperature()
    optimizer = make_optimizer(model, args(optimizer="adam", weight_decay=0.0))
    assert type(optimizer) is torch.optim.Adam and len(optimizer.param_groups) == 1
    assert optimizer.param_groups[0]["weight_decay"] == 0 and optimizer.param_groups[0]["lr"] == 1e-3


def test_warm_up_then_cosine_at_known_steps():
    # 4 warm-up steps, 12 in all: 1/4, 2/4, 3/4, 1, then cosine over the 8 remaining steps down to 0
    assert [lr_factor(s, 4, 12, "cosine") for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 4, 12, "cosine") == 1.0
    assert lr_factor(8, 4, 12, "cosine") == pytest.approx(0.5)  # half way: cos(pi/2)
    assert lr_factor(6, 4, 12, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_factor(12, 4, 12, "cosine") == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(50, 4, 12, "cosine") == pytest.approx(0.0, abs=1e-12)  # past the end: stays at 0
    assert lr_factor(0, 0, 10, "cosine") == 1.0
    assert [lr_factor(s, 2, 10, "constant") for s in range(4)] == [0.5, 1.0, 1.0, 1.0]


def test_the_schedule_reads_the_step_from_the_optimizer_state():
    model = nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    schedule = LRSchedule(optimizer, warmup_steps=2, total_steps=6, schedule="cosine")
    seen = []
    for _ in range(6):
        model(torch.ones(1, 3)).sum().backward()
        schedule.step()
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
    cosine = [0.1 * 0.5 * (1 + math.cos(math.pi * k / 4)) for k in (1, 2, 3)]  # 4 steps after the warm-up
    assert seen == pytest.approx([0.05, 0.1, 0.1] + cosine)
    # a fresh optimizer loaded from this one's state continues where it stopped, on the schedule it started
    # (a longer one asked for now does not stretch it): step 6 of 6 is the end of the cosine
    again = torch.optim.AdamW(nn.Linear(3, 2).parameters(), lr=0.1)
    again.load_state_dict(optimizer.state_dict())
    resumed = LRSchedule(again, warmup_steps=3, total_steps=8, schedule="cosine")
    assert (resumed.steps_done(), resumed.warmup_steps, resumed.total_steps) == (6, 2, 6)
    resumed.step()
    assert again.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="unknown schedule"):
        LRSchedule(optimizer, 0, 1, "linear")


def test_the_default_schedule_never_touches_the_learning_rate():
    model = nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    schedule = LRSchedule(optimizer, warmup_steps=0, total_steps=5, schedule="constant")
    optimizer.param_groups[0]["lr"] = 0.3  # set by hand: the inactive schedule leaves it
    assert schedule.step() == 1.0 and optimizer.param_groups[0]["lr"] == 0.3


def test_clipping_bounds_the_global_norm_and_is_off_at_zero():
    model = nn.Linear(3, 2)
    (100 * model(torch.ones(4, 3))).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    assert clip_gradients(model, 0) is None
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, model.parameters()))
    norm = clip_gradients(model, 1.0)
    assert norm == pytest.approx(float(torch.cat([g.flatten() for g in grads]).norm()))
    assert float(torch.cat([p.grad.flatten() for p in model.parameters()]).norm()) == pytest.approx(1.0, rel=1e-5)


def train(script, course, runs_dir, *extra, name="run"):
    return train_on_course(script, course, runs_dir, *extra, name=name, batch_size=32, max_epochs=None)


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


@pytest.mark.parametrize("script", ["train_image.py", "train_multimodal.py", "train_contrastive.py"])
def test_bad_optimizer_flags_stop_with_one_line(script, larger_course, tmp_path):
    for flags, message in [(["--weight-decay", "-1"], "must be a non-negative finite number"),
                           (["--warmup-epochs", "nan"], "must be a non-negative finite number"),
                           (["--clip-grad", "x"], "not a number"),
                           (["--schedule", "linear"], "invalid choice"),
                           (["--weight-decay", "0.1"], "--weight-decay needs --optimizer adamw")]:
        out = train(script, larger_course, tmp_path, "--max-epochs", "1", *flags)
        assert out.returncode == 2, (flags, out.stderr)
        assert message in out.stderr and "Traceback" not in out.stderr
        assert not (tmp_path / "run").exists()


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


def test_the_stable_recipe_sets_its_flags_unless_given(larger_course, tmp_path):
    assert train("train_image.py", larger_course, tmp_path, "--max-epochs", "1", "--recipe", "stable",
                 "--clip-grad", "5").returncode == 0
    config = json.loads((tmp_path / "run/config.json").read_text())["args"]
    assert (config["recipe"], config["optimizer"], config["weight_decay"], config["warmup_epochs"],
            config["schedule"], config["clip_grad"]) == ("stable", "adamw", 1e-4, 1.0, "cosine", 5.0)
    out = train("train_image.py", larger_course, tmp_path, "--resume", "--max-epochs", "2", "--recipe", "exam")
    assert out.returncode == 2 and "--recipe exam differs from the run's saved stable" in out.stderr
    out = train("train_image.py", larger_course, tmp_path, "--max-epochs", "1", "--recipe", "fast", name="bad")
    assert out.returncode == 2 and "invalid choice" in out.stderr


@pytest.mark.parametrize("script, fusion", [("train_image.py", None), ("train_multimodal.py", "attention-tokens"),
                                            ("train_multimodal.py", "concat")])
def test_diagnostics_are_logged_and_change_no_number(script, fusion, larger_course, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    extra = ["--max-epochs", "2"] + (["--fusion", fusion] if fusion else [])
    assert train(script, larger_course, tmp_path, *extra, name="plain").returncode == 0
    out = train(script, larger_course, tmp_path, *extra, "--log-diagnostics", name="diag")
    assert out.returncode == 0, out.stderr
    a, b = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("plain", "diag"))
    for key in ("best_epoch", "epochs_run", "val", "test"):
        assert a[key] == b[key], key
    la, lb = (torch.load(tmp_path / n / "checkpoints/last.pt", weights_only=True) for n in ("plain", "diag"))
    assert all(torch.equal(la["model"][k], lb["model"][k]) for k in la["model"])
    assert torch.equal(la["rng"]["torch"], lb["rng"]["torch"])  # no random number drawn by the diagnostics
    events = EventAccumulator(str(tmp_path / "diag"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert any(t.startswith("diag/grad_norm/") for t in tags) and any(t.startswith("diag/dead_relu/") for t in tags)
    assert all(0 <= e.value <= 1 for t in tags if t.startswith("diag/dead_relu/") for e in events.Scalars(t))
    if fusion == "attention-tokens":
        entropies = [t for t in tags if t.startswith("diag/attention_entropy/")]
        assert entropies
        for tag in entropies:  # each attention layer's entropy lies between 0 and ln(keys)
            ceiling = tag.replace("attention_entropy/", "attention_entropy_max/")
            assert 0 <= events.Scalars(tag)[-1].value <= events.Scalars(ceiling)[-1].value + 1e-6
    # the first steps one by one: every step of this short run (3 a epoch), from step 1
    step_tags = [t for t in tags if t.startswith("diag_step/")]
    assert any(t.startswith("diag_step/grad_norm/") for t in step_tags)
    assert any(t.startswith("diag_step/dead_relu/") for t in step_tags)
    assert all([e.step for e in events.Scalars(t)] == list(range(1, 7)) for t in step_tags)
    out = run_script(["scripts/diagnostics.py", str(tmp_path / "diag"), "--steps", "--out", str(tmp_path / "s.csv")])
    assert out.returncode == 0, out.stderr
    trace = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert [r["step"] for r in trace] == [str(i) for i in range(1, 7)] and set(trace[0]) == {"step", *step_tags}
    out = run_script(["scripts/diagnostics.py", str(tmp_path / "plain"), "--steps"])
    assert out.returncode == 2 and "no first-steps trace" in out.stderr
    tag = step_tags[0]
    out = run_script(["scripts/diagnostics.py", str(tmp_path / "diag"), str(tmp_path / "diag"), "--steps",
                      "--figure", str(tmp_path / "f.png"), "--tags", tag])
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = run_script(["scripts/diagnostics.py", str(tmp_path / "diag"), "--figure", str(tmp_path / "g.png"),
                      "--tags", "diag/nothing"])
    assert out.returncode == 2 and "no scalar diag/nothing" in out.stderr and not (tmp_path / "g.png").exists()
    out = run_script(["scripts/diagnostics.py", str(tmp_path / "diag"), str(tmp_path / "plain")])
    assert out.returncode == 2 and "one RUN_DIR for a CSV" in out.stderr
    plain = EventAccumulator(str(tmp_path / "plain"))
    plain.Reload()
    assert not any(t.startswith("diag/") for t in plain.Tags()["scalars"])
    # scripts/diagnostics.py: the same numbers, one row per epoch, curves first
    out = run_script(["scripts/diagnostics.py", str(tmp_path / "diag"), "--out", str(tmp_path / "diag.csv")])
    assert out.returncode == 0, out.stderr
    table = list(csv.DictReader(open(tmp_path / "diag.csv")))
    assert [r["epoch"] for r in table] == ["1", "2"] and list(table[0])[:3] == ["epoch", "loss/train", "loss/val"]
    tag = next(t for t in tags if t.startswith("diag/grad_norm/"))
    assert [float(r[tag]) for r in table] == pytest.approx([e.value for e in events.Scalars(tag)], rel=1e-5)


def test_a_gpu_run_asks_for_deterministic_kernels(monkeypatch):
    from common.training.loop import request_determinism
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    assert request_determinism(torch.device("cpu")) == {"deterministic_algorithms": False}
    try:
        recorded = request_determinism(torch.device("cuda"))  # sets flags only: no CUDA call is made
        assert recorded == {"deterministic_algorithms": True, "cublas_workspace_config": ":4096:8"}
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        torch.use_deterministic_algorithms(False)
