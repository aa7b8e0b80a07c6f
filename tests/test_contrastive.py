"""NT-Xent / NT-Log losses: closed-form gradients, batched forms, limits, temperature clamp, exam table."""
import json
import math
import os
import subprocess
import sys

import pytest
import torch

from common.training.retrieval import retrieval_from_similarity, retrieval_metrics
from common.nets.losses import (AllPairsNTLog, InBatchNTXent, f_log, f_xent, nt_log, nt_log_grad_u, nt_xent,
                                nt_xent_grad_u)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOG2 = math.log(2.0)
TAUS = (0.05, 0.5, 1.0, 7.0)

EXAM_TABLE2 = [
    (0.99, 0.5, -0.380, -0.622), (0.5, 0.5, -0.5, -0.622), (0.01, 0.5, -0.620, -0.622),
    (-0.5, 0.5, -0.731, -0.622), (0.99, -0.5, -0.184, -0.378), (0.5, -0.5, -0.269, -0.378),
    (0.01, -0.5, -0.375, -0.378), (-0.5, -0.5, -0.5, -0.378),
]


def rand(*shape, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(*shape, generator=g, dtype=torch.float64)


def autograd_u(loss_fn, u, *args, **kwargs):
    u = u.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss_fn(u, *args, **kwargs).sum(), u)
    return grad


# --------------------------------------------------------------------------- #
# Closed-form gradients
# --------------------------------------------------------------------------- #

@pytest.mark.parametrize("k", [1, 5])
@pytest.mark.parametrize("tau", TAUS)
def test_closed_form_gradients_match_autograd(k, tau):
    u, v_pos, v_neg = rand(6, seed=1), rand(6, seed=2), rand(k, 6, seed=3)
    torch.testing.assert_close(nt_xent_grad_u(u, v_pos, v_neg, tau), autograd_u(nt_xent, u, v_pos, v_neg, tau),
                               rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(nt_log_grad_u(u, v_pos, v_neg, tau), autograd_u(nt_log, u, v_pos, v_neg, tau),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shared", [True, False])
def test_closed_form_gradients_batched_and_with_bias(shared):
    b, k, d, tau = 4, 3, 5, 0.3
    u, v_pos = rand(b, d, seed=4), rand(b, d, seed=5)
    v_neg = rand(k, d, seed=6) if shared else rand(b, k, d, seed=6)
    torch.testing.assert_close(nt_xent_grad_u(u, v_pos, v_neg, tau), autograd_u(nt_xent, u, v_pos, v_neg, tau))
    torch.testing.assert_close(nt_log_grad_u(u, v_pos, v_neg, tau, bias=-1.5),
                               autograd_u(nt_log, u, v_pos, v_neg, tau, bias=-1.5))


def test_gradients_match_exam_formulas_one_negative():
    """Ours are minus the exam's gradients of its maximised objectives."""
    u, v_pos, v_neg = rand(4, seed=7), rand(4, seed=8), rand(1, 4, seed=9)
    tau = 0.7
    sp, sn = float(u @ v_pos) / tau, float(u @ v_neg[0]) / tau
    z = math.exp(sp) + math.exp(sn)
    exam_xent = v_pos / tau * (1 - math.exp(sp) / z) - v_neg[0] / tau * math.exp(sn) / z
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    exam_log = sig(-sp) * v_pos / tau - sig(sn) * v_neg[0] / tau
    torch.testing.assert_close(nt_xent_grad_u(u, v_pos, v_neg, tau), -exam_xent)
    torch.testing.assert_close(nt_log_grad_u(u, v_pos, v_neg, tau), -exam_log)
    # the negative's coefficient is the exam's f (at tau, not only tau = 1)
    assert math.isclose(f_xent(sp * tau, sn * tau, tau), -math.exp(sn) / z, rel_tol=1e-12)
    assert math.isclose(f_log(sn * tau, tau), -sig(sn), rel_tol=1e-12)


# --------------------------------------------------------------------------- #
# Loss values
# --------------------------------------------------------------------------- #

def test_losses_against_direct_formulas():
    u, v_pos, v_neg = rand(5, seed=10), rand(5, seed=11), rand(3, 5, seed=12)
    tau = 0.4
    s = torch.cat([(u @ v_pos).view(1), v_neg @ u]) / tau
    expected_xent = -torch.log(torch.exp(s[0]) / torch.exp(s).sum())
    expected_log = -torch.log(torch.sigmoid(s[0])) - torch.log(torch.sigmoid(-s[1:])).sum()
    torch.testing.assert_close(nt_xent(u, v_pos, v_neg, tau), expected_xent)
    torch.testing.assert_close(nt_log(u, v_pos, v_neg, tau), expected_log)


def test_small_tau_is_finite_with_large_similarities():
    tau = 1e-3
    u, v_pos, v_neg = rand(2, 8, seed=13, scale=3.0), rand(2, 8, seed=14, scale=3.0), rand(2, 4, 8, seed=15, scale=3.0)
    for loss_fn, grad_fn in ((nt_xent, nt_xent_grad_u), (nt_log, nt_log_grad_u)):
        for dtype in (torch.float32, torch.float64):
            uu = u.to(dtype).requires_grad_(True)
            loss = loss_fn(uu, v_pos.to(dtype), v_neg.to(dtype), tau)
            (grad,) = torch.autograd.grad(loss.sum(), uu)
            assert torch.isfinite(loss).all() and torch.isfinite(grad).all()
            assert torch.isfinite(grad_fn(u.to(dtype), v_pos.to(dtype), v_neg.to(dtype), tau)).all()
    # the batched modules as well
    x, y = rand(6, 8, seed=16, scale=3.0).float().requires_grad_(True), rand(6, 8, seed=17, scale=3.0).float()
    for crit in (InBatchNTXent("dot", tau=tau), AllPairsNTLog("dot", tau=tau)):
        loss = crit(x, y)
        (grad,) = torch.autograd.grad(loss, x)
        assert torch.isfinite(loss) and torch.isfinite(grad).all()


@pytest.mark.parametrize("similarity", ["dot", "cosine"])
def test_large_tau_limits(similarity):
    u, v_pos, v_neg = rand(7, seed=18), rand(7, seed=19), rand(1, 7, seed=20)
    assert abs(float(nt_xent(u, v_pos, v_neg, 1e6, similarity)) - LOG2) < 1e-4
    assert abs(float(nt_log(u, v_pos, v_neg, 1e6, similarity)) - 2 * LOG2) < 1e-4
    # gradients vanish like 1/tau
    assert float(nt_xent_grad_u(u, v_pos, v_neg, 1e6).norm()) < 1e-5
    assert float(nt_log_grad_u(u, v_pos, v_neg, 1e6).norm()) < 1e-5
    many = rand(5, 7, seed=21)
    assert abs(float(nt_xent(u, v_pos, many, 1e6, similarity)) - math.log(6)) < 1e-4
    assert abs(float(nt_log(u, v_pos, many, 1e6, similarity)) - 6 * LOG2) < 1e-4


def test_small_tau_behaviour():
    # unit vectors: dot = cosine; s+ = 0.8, s- = 0.3 and swapped
    u = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    a = torch.tensor([0.8, 0.6, 0.0], dtype=torch.float64)
    b = torch.tensor([0.3, 0.0, math.sqrt(1 - 0.09)], dtype=torch.float64)
    tau = 1e-3
    assert float(nt_xent(u, a, b[None], tau)) < 1e-100             # s+ > s-: loss -> 0
    assert math.isclose(tau * float(nt_xent(u, b, a[None], tau)), 0.5, rel_tol=1e-6)   # (s- - s+)/tau
    assert math.isclose(tau * float(nt_log(u, a, b[None], tau)), 0.3, rel_tol=1e-6)    # max(0,-s+)+max(0,s-)


def test_cosine_is_scale_invariant():
    u, v_pos, v_neg = rand(6, seed=22), rand(6, seed=23), rand(4, 6, seed=24)
    for loss_fn in (nt_xent, nt_log):
        base = loss_fn(u, v_pos, v_neg, 0.2, "cosine")
        scaled = loss_fn(3.7 * u, 0.01 * v_pos, 25.0 * v_neg, 0.2, "cosine")
        torch.testing.assert_close(base, scaled)
        assert not torch.allclose(loss_fn(u, v_pos, v_neg, 0.2, "dot"), loss_fn(3.7 * u, v_pos, v_neg, 0.2, "dot"))
    x, y = rand(5, 6, seed=25), rand(5, 6, seed=26)
    for crit in (InBatchNTXent("cosine", tau=0.1), AllPairsNTLog("cosine", tau=0.1, bias_init=-2.0)):
        crit = crit.double()
        torch.testing.assert_close(crit(x, y), crit(9.0 * x, 0.2 * y))
    scales = torch.tensor([[0.5], [2.0], [1.0], [7.0], [0.1]], dtype=torch.float64)
    assert retrieval_metrics(x, y) == retrieval_metrics(scales * x, scales.flip(0) * y)


# --------------------------------------------------------------------------- #
# Batched forms vs a loop over anchors
# --------------------------------------------------------------------------- #

def others(t, i):
    return torch.cat([t[:i], t[i + 1:]])


@pytest.mark.parametrize("similarity", ["dot", "cosine"])
@pytest.mark.parametrize("batch", [1, 3, 8])
def test_in_batch_ntxent_equals_loop(similarity, batch):
    tau = 0.3
    x, y = rand(batch, 5, seed=27), rand(batch, 5, seed=28)
    crit = InBatchNTXent(similarity, tau=tau).double()
    loop = sum(0.5 * (nt_xent(x[i], y[i], others(y, i), tau, similarity)
                      + nt_xent(y[i], x[i], others(x, i), tau, similarity)) for i in range(batch)) / batch
    torch.testing.assert_close(crit(x, y), loop)


@pytest.mark.parametrize("similarity", ["dot", "cosine"])
@pytest.mark.parametrize("batch", [1, 3, 8])
@pytest.mark.parametrize("bias", [0.0, -2.5])
def test_all_pairs_ntlog_equals_loop(similarity, batch, bias):
    tau = 0.3
    x, y = rand(batch, 5, seed=29), rand(batch, 5, seed=30)
    crit = AllPairsNTLog(similarity, tau=tau, bias_init=bias).double()
    loop = sum(nt_log(x[i], y[i], others(y, i), tau, similarity, bias=bias) for i in range(batch)) / batch
    torch.testing.assert_close(crit(x, y), loop)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("make", [lambda: InBatchNTXent("cosine", learn_tau=True),
                                  lambda: AllPairsNTLog("dot", learn_tau=True, learn_bias=True)])
def test_small_last_batch(batch, make):
    crit = make()
    x = torch.randn(batch, 16, requires_grad=True)
    y = torch.randn(batch, 16, requires_grad=True)
    loss = crit(x, y)
    assert loss.shape == () and torch.isfinite(loss)
    loss.backward()
    for t in [x.grad, y.grad] + [p.grad for p in crit.parameters()]:
        assert t is not None and torch.isfinite(t).all()
    if batch == 1 and isinstance(crit, InBatchNTXent):
        assert loss.item() == 0.0


def test_shape_errors():
    with pytest.raises(ValueError):
        nt_xent(torch.randn(4), torch.randn(5), torch.randn(2, 4), 1.0)
    with pytest.raises(ValueError):
        nt_log(torch.randn(4), torch.randn(4), torch.randn(2, 4), 1.0, similarity="euclid")
    with pytest.raises(ValueError):
        InBatchNTXent()(torch.randn(3, 4), torch.randn(2, 4))
    with pytest.raises(ValueError):
        InBatchNTXent(learn_tau=True, tau=5.0)      # outside the clamp range


# --------------------------------------------------------------------------- #
# Learnable temperature
# --------------------------------------------------------------------------- #

@pytest.mark.parametrize("cls", [InBatchNTXent, AllPairsNTLog])
def test_learned_tau_stays_inside_clamp(cls):
    torch.manual_seed(0)
    crit = cls("cosine", tau=0.1, learn_tau=True)
    lo_tau, hi_tau = 1 / 100, 1.0
    opt = torch.optim.SGD(crit.parameters(), lr=50.0)
    # partners at cosine 0.3, non-partners at 0: the loss keeps asking for a sharper
    # softmax / sigmoid, i.e. tau -> 0
    x = torch.eye(4, 8)
    partners = 0.3 * x + math.sqrt(1 - 0.09) * torch.eye(4, 8).roll(4, dims=1)
    for _ in range(20):
        opt.zero_grad()
        crit(x, partners).backward()
        opt.step()
        assert lo_tau - 1e-6 <= crit.tau <= hi_tau + 1e-6
    assert math.isclose(crit.tau, lo_tau, rel_tol=1e-4)
    stored = float(crit.temperature.log_inv_tau.detach())
    assert stored <= math.log(100) + 50.0 * 1.0  # at most one step past the bound, never drifting further
    # anti-aligned pairs push tau -> inf; it must leave the lower bound and stop at the upper one
    y = -torch.eye(4, 8) + 0.01
    for _ in range(20):
        opt.zero_grad()
        crit(x, y).backward()
        opt.step()
        assert lo_tau - 1e-6 <= crit.tau <= hi_tau + 1e-6
    assert math.isclose(crit.tau, hi_tau, rel_tol=1e-4)
    # the value used in the loss is the clamped one
    expected = cls("cosine", tau=hi_tau)(x, y)
    torch.testing.assert_close(crit(x, y).detach(), expected)


def test_fixed_tau_and_bias_are_buffers():
    crit = AllPairsNTLog("dot", tau=0.05)
    assert list(crit.parameters()) == []
    assert math.isclose(crit.tau, 0.05, rel_tol=1e-6) and float(crit.bias) == 0.0
    assert set(crit.state_dict()) == {"bias", "temperature.log_inv_tau"}
    learned = AllPairsNTLog("dot", learn_bias=True)
    assert math.isclose(float(learned.bias.detach()), -math.log(127), rel_tol=1e-6)


# --------------------------------------------------------------------------- #
# Exam's Table 2 and the retrieval helper
# --------------------------------------------------------------------------- #

@pytest.mark.parametrize("s_pos,s_neg,exam_xent,exam_log", EXAM_TABLE2)
def test_exam_table2(s_pos, s_neg, exam_xent, exam_log):
    assert round(f_xent(s_pos, s_neg), 3) == exam_xent
    assert round(f_log(s_neg), 3) == exam_log


def test_f_xent_many_negatives_is_softmax_weight():
    s_pos, s_neg = torch.tensor(0.4), torch.tensor([0.1, 0.7, -0.2])
    weights = f_xent(s_pos, s_neg, tau=0.5)
    expected = -torch.softmax(torch.cat([s_pos.view(1), s_neg]) / 0.5, 0)[1:]
    torch.testing.assert_close(weights, expected)
    # one negative given with a trailing K = 1 axis agrees with the scalar form
    assert math.isclose(float(f_xent(s_pos, s_neg[:1])), f_xent(0.4, 0.1), rel_tol=1e-6)


def test_retrieval_metrics():
    y = torch.eye(4)
    x = y[[0, 1, 3, 2]]                       # images 2 and 3 retrieve each other's audio
    labels = torch.tensor([0, 1, 5, 5])
    m = retrieval_metrics(x, y, labels)
    assert m["n"] == 4
    assert m["recall@1_img2aud"] == 0.5 and m["recall@1_aud2img"] == 0.5
    assert m["digit@1_img2aud"] == 1.0 and m["digit@1_aud2img"] == 1.0
    assert m["recall@1_ceiling"] == 3 / 4  # three digits among four pairs
    assert set(retrieval_metrics(x, y)) == {"n", "recall@1_img2aud", "recall@1_aud2img"}


def test_class_level_retrieval_on_a_hand_made_similarity_matrix():
    # rows: image queries, columns: audio items; pair i = (image i, audio i); digits 0, 0, 1, 2
    sims = torch.tensor([[0.10, 0.90, 0.55, 0.30],   # image 0: audio 1 (digit 0), then audio 2
                         [0.05, 0.10, 0.80, 0.70],   # image 1: audio 2 (digit 1), then audio 3 (digit 2)
                         [0.60, 0.30, 0.45, 0.20],   # image 2: audio 0 (digit 0), then audio 2 (its digit)
                         [0.20, 0.15, 0.50, 0.90]])  # image 3: its own audio
    labels = torch.tensor([0, 0, 1, 2])
    m = retrieval_from_similarity(sims, labels, ks=(1, 2))
    # image -> audio: exact partner only for image 3; its digit at top-1 for images 0 and 3, in the top 2 also for 2
    assert m["recall@1_img2aud"] == 0.25
    assert m["digit@1_img2aud"] == 0.5 and m["digit@2_img2aud"] == 0.75
    # audio -> image (columns): audio 0 gets images 2, 3; audio 1 images 0, 2; audio 2 images 1, 0; audio 3 image 3
    assert m["recall@1_aud2img"] == 0.25
    assert m["digit@1_aud2img"] == 0.5 and m["digit@2_aud2img"] == 0.5
    assert m["recall@1_ceiling"] == 0.75
    # the top k holds every item when k = B: a hit whenever the digit has an item
    assert retrieval_from_similarity(sims, labels, ks=(4,))["digit@4_img2aud"] == 1.0
    with pytest.raises(ValueError, match="square"):
        retrieval_from_similarity(sims[:3], labels)


# --------------------------------------------------------------------------- #
# The analysis script
# --------------------------------------------------------------------------- #

def test_analysis_script(tmp_path):
    out = tmp_path / "analysis"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "contrastive_analysis.py"), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for name in ("loss_vs_tau.png", "grad_norm_vs_tau.png", "f_map.png", "analysis.json"):
        assert (out / name).stat().st_size > 0
    report = json.loads((out / "analysis.json").read_text())
    assert report["table2_all_match"] and len(report["table2"]) == 8
    for item in report["limits"]:
        assert abs(item["numeric"]["large_tau"]["xent"] - LOG2) < 1e-4
        assert abs(item["numeric"]["large_tau"]["log"] - 2 * LOG2) < 1e-4
    assert "0.380" in proc.stdout and "-0.731" in proc.stdout
    assert not [p for p in os.listdir(out) if p.startswith(".tmp-")]


def test_class_level_retrieval_ranks_queries_in_chunks_without_changing_the_result(monkeypatch):
    import common.training.retrieval as contrastive
    torch.manual_seed(0)
    sims, labels = torch.randn(300, 300), torch.randint(0, 10, (300,))
    sims[:, 7] = sims[:, 8]  # ties: broken by the lower index, in every chunk
    whole = retrieval_from_similarity(sims, labels, ks=(1, 3, 5))
    monkeypatch.setattr(contrastive, "RANKING_ROWS", 7)
    assert retrieval_from_similarity(sims, labels, ks=(1, 3, 5)) == whole
    # the same numbers as a plain loop over queries
    for k in (1, 3, 5):
        top = [sorted(range(300), key=lambda j: (-sims[i, j].item(), j))[:k] for i in range(300)]
        assert whole[f"digit@{k}_img2aud"] == pytest.approx(
            sum(any(labels[j] == labels[i] for j in top[i]) for i in range(300)) / 300)
