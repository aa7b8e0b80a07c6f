"""common/training/loop.py: early stopping and selection, epoch order, precision, the optimizer, the schedule,
clipping, checkpoints that load with weights_only=True."""
import math
import os
import shutil
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from common.training.loop import (EarlyStopping, LRSchedule, TrainingError, clip_gradients, load_checkpoint, lr_factor,
                                  make_adam, make_optimizer, parameter_groups, resolve_precision, selection_score)

from conftest import one_line_error, train_named


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


def test_resolve_precision():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    assert resolve_precision("auto", cpu) in ("fp32", "bf16")
    assert resolve_precision("auto", torch.device("meta")) == "fp32"  # neither CPU nor CUDA


def test_adam_is_fused_where_torch_has_it_and_steps_like_plain_adam():
    torch.manual_seed(0)
    w1 = torch.randn(50, requires_grad=True)
    w2 = w1.detach().clone().requires_grad_()
    fused, plain = make_adam([w1], 1e-2), torch.optim.Adam([w2], lr=1e-2)
    for _ in range(5):
        for w, opt in ((w1, fused), (w2, plain)):
            opt.zero_grad()
            (w ** 2).sum().backward()
            opt.step()
    assert torch.allclose(w1, w2, atol=1e-6)
    assert fused.defaults.get("fused") in (True, None)


def test_a_text_file_is_not_a_checkpoint(tmp_path, labelled_course):
    (tmp_path / "notes.pt").write_text("hello")
    with pytest.raises(TrainingError, match="is not a PyTorch checkpoint"):
        load_checkpoint(str(tmp_path / "notes.pt"))
    out = train_named("train_multimodal.py", labelled_course, tmp_path, "mm", "--init-from", str(tmp_path / "notes.pt"))
    assert "is not a PyTorch checkpoint" in one_line_error(out, code=1)


def test_11_an_unsafe_checkpoint_is_refused_in_our_words(tmp_path):
    import pickle
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": 1, "x": shutil.rmtree}, f)  # a callable: weights_only refuses it
    with pytest.raises(TrainingError) as e:
        load_checkpoint(str(path))
    assert "refused checkpoint" in str(e.value) and "weights_only" not in str(e.value)
    assert "False" not in str(e.value)


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
