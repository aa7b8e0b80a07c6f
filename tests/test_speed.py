"""The speed work keeps behaviour: the cheaper dropout, the phase-split conv, --precision, fused Adam."""
import json
import math
import os
import platform
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from common.nets.fusions import mean_pool_steps
from common.nets.featurizers import AudioFeaturizer
from common.nets.layers import Dropout, MaxPool2x2, PhaseSplitConv1d
from common.nets.models import FUSION_CHOICES, build_multimodal
from common.training.loop import autocast, make_adam, resolve_precision
from conftest import ROOT, train_on_course


@pytest.mark.parametrize("p", [0.5, 0.3])
def test_dropout_drops_p_and_scales_kept_values_in_training_only(p):
    torch.manual_seed(0)
    drop = Dropout(p)
    x = torch.rand(256, 4001) + 0.5  # an odd size: the p = 0.5 mask is cut from whole random bytes
    y = drop(x)
    dropped = (y == 0).float().mean().item()
    n = x.numel()
    assert abs(dropped - p) < 5 * (p * (1 - p) / n) ** 0.5  # within 5 standard errors of a binomial share
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] / (1 - p))
    drop.eval()
    assert drop(x) is x


def test_dropout_mask_bits_are_independent_and_seeded():
    drop = Dropout(0.5)
    x = torch.ones(64, 32000)
    torch.manual_seed(1)
    a = drop(x) == 0
    torch.manual_seed(1)
    assert torch.equal(a, drop(x) == 0)  # the global seed governs it, like nn.Dropout
    # neighbouring values come from different bits of one byte: no pattern across the 8 positions
    per_position = a.view(-1, 8).float().mean(0)
    assert torch.all((per_position - 0.5).abs() < 0.005)
    both = (a.view(-1, 8)[:, 0] & a.view(-1, 8)[:, 1]).float().mean().item()
    assert abs(both - 0.25) < 0.005


def test_dropout_gradient_is_the_mask_times_the_scale():
    torch.manual_seed(0)
    drop = Dropout(0.5)
    x = torch.randn(32, 100, requires_grad=True)
    y = drop(x)
    y.backward(torch.ones_like(y))
    assert torch.equal(x.grad, (y != 0).float() * 2)


def test_dropout_refuses_p_of_one():
    with pytest.raises(ValueError):
        Dropout(1.0)


@pytest.mark.parametrize("shape", [(1, 32, 100, 4, 48, 8000), (3, 5, 6, 3, 2, 101), (2, 4, 8, 4, 0, 37),
                                   (32, 64, 25, 4, 12, 300)])
def test_phase_split_conv_equals_conv1d_with_its_gradients(shape):
    c_in, c_out, k, stride, pad, length = shape
    torch.manual_seed(0)
    conv = PhaseSplitConv1d(c_in, c_out, k, stride=stride, padding=pad).double()
    x = torch.randn(2, c_in, length, dtype=torch.double, requires_grad=True)
    y = conv(x)
    ref = F.conv1d(x, conv.weight, conv.bias, stride=stride, padding=pad)
    assert y.shape == ref.shape
    assert torch.allclose(y, ref, atol=1e-10)
    g = torch.randn_like(y)
    got = torch.autograd.grad(y, (x, conv.weight, conv.bias), g)
    want = torch.autograd.grad(ref, (x, conv.weight, conv.bias), g)
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("size", [(28, 28), (7, 7), (64, 101)])
def test_max_pool_2x2_gives_max_pool2d_values_and_under_autograd_is_max_pool2d(dtype, size):
    torch.manual_seed(0)
    pool = MaxPool2x2()
    # quantised values: many tied windows, negative ones too
    x = (torch.randint(-3, 4, (5, 3, *size)).float() * 0.5).to(dtype)
    with torch.inference_mode():
        assert torch.equal(pool(x), F.max_pool2d(x, 2, 2))
    assert torch.equal(pool(x), F.max_pool2d(x, 2, 2))  # no gradient asked for: the slice form
    assert torch.isnan(pool(torch.full((1, 1, 2, 2), float("nan")))).all()
    # under autograd it is nn.MaxPool2d: one element of a tied window gets the gradient
    leaf = x.float().requires_grad_()
    g = torch.randn(5, 3, size[0] // 2, size[1] // 2)
    got, = torch.autograd.grad(pool(leaf), leaf, g)
    want, = torch.autograd.grad(F.max_pool2d(leaf, 2, 2), leaf, g)
    assert torch.equal(got, want)
    assert pool.kernel_size == 2 and pool.stride == 2


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("length, k", [(500, 5), (503, 5), (12, 3)])
def test_mean_pool_steps_gives_avg_pool1d_values_and_under_autograd_is_avg_pool1d(dtype, length, k):
    torch.manual_seed(0)
    # values over many orders of magnitude, so that the order of the additions shows if it differs
    x = (torch.randn(6, 4, length) * torch.exp(3 * torch.randn(6, 4, length))).to(dtype)
    kept = x.clone()
    with torch.inference_mode():
        assert torch.equal(mean_pool_steps(x, k), F.avg_pool1d(x, k, k))
    assert torch.equal(mean_pool_steps(x, k), F.avg_pool1d(x, k, k))  # no gradient asked for
    assert torch.equal(x, kept)  # the input is not written to
    leaf = x.detach().requires_grad_()
    pooled, reference = mean_pool_steps(leaf, k), F.avg_pool1d(leaf, k, k)
    assert type(pooled.grad_fn) is type(reference.grad_fn)  # under autograd: avg_pool1d's own graph
    g = torch.randn(6, 4, length // k, dtype=dtype)
    assert torch.equal(torch.autograd.grad(pooled, leaf, g)[0], torch.autograd.grad(reference, leaf, g)[0])


def test_audio_featurizer_keeps_the_exam_layers_and_state_dict():
    f = AudioFeaturizer()
    assert isinstance(f.conv[0], torch.nn.Conv1d)  # a Conv1d subclass: same parameters and keys
    shapes = {k: tuple(v.shape) for k, v in f.state_dict().items()}
    assert shapes == {"conv.0.weight": (32, 1, 100), "conv.0.bias": (32,), "conv.2.weight": (64, 32, 25),
                      "conv.2.bias": (64,), "fc.weight": (128, 32000), "fc.bias": (128,)}
    assert f.conv[0](torch.zeros(3, 1, 8000)).shape == (3, 32, 2000)


@pytest.mark.parametrize("fusion", FUSION_CHOICES)
def test_every_fusion_trains_a_step_under_bf16_autocast(fusion):
    torch.manual_seed(0)
    model = build_multimodal(fusion)
    device = torch.device("cpu")
    with autocast("bf16", device):
        logits = model(torch.rand(4, 1, 28, 28), torch.randn(4, 1, 8000))
    loss = F.cross_entropy(logits.float(), torch.arange(4))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and p.dtype == torch.float32 for p in model.parameters())
    assert model.audio_featurizer.conv[0].weight.grad.abs().sum() > 0  # the phase-split conv is trained


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


def train(course, runs_dir, name, *extra, script="train_multimodal.py"):
    return train_on_course(script, course, runs_dir, *extra, name=name, max_epochs=2)


def test_precision_reaches_config_and_a_bf16_run_trains(labelled_course, tmp_path):
    out = train(labelled_course, tmp_path, "bf16", "--precision", "bf16")
    assert out.returncode == 0, out.stderr
    config = json.loads((tmp_path / "bf16" / "config.json").read_text())
    assert config["precision"] == "bf16" and config["args"]["precision"] == "bf16"
    metrics = json.loads((tmp_path / "bf16" / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and math.isfinite(metrics["val"]["loss"])
    best = torch.load(tmp_path / "bf16" / "checkpoints" / "best.pt", weights_only=True)
    assert all(t.dtype == torch.float32 for t in best["model"].values() if t.is_floating_point())
    start = torch.load(tmp_path / "bf16" / "checkpoints" / "last.pt", weights_only=True)
    assert len(start["history"]) == 2 and start["history"][1]["train_loss"] != start["history"][0]["train_loss"]

    auto = train(labelled_course, tmp_path, "auto")
    assert auto.returncode == 0, auto.stderr
    used = json.loads((tmp_path / "auto" / "config.json").read_text())["precision"]
    assert used == resolve_precision("auto", torch.device("cpu"))


@pytest.mark.parametrize("script", ["train_image.py", "train_multimodal.py"])
def test_fp32_runs_repeat_bit_for_bit(script, labelled_course, tmp_path):
    for name in ("a", "b"):
        out = train(labelled_course, tmp_path, name, "--precision", "fp32", script=script)
        assert out.returncode == 0, out.stderr
    a, b = (torch.load(tmp_path / n / "checkpoints" / "last.pt", weights_only=True) for n in ("a", "b"))
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    ma, mb = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("a", "b"))
    assert ma["val"] == mb["val"] and ma["test"] == mb["test"]


HEAP_OR_MMAP = """
import ctypes, sys
from common.evaluation.malloc import keep_freed_memory
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, (ctypes.c_size_t,), (ctypes.c_void_p,)
took = keep_freed_memory() if sys.argv[1] == "keep" else None
before = libc.mallinfo2().hblkhd
block = libc.malloc(64 * 2 ** 20)  # the size of a 64 MiB tensor (torch allocates it with malloc)
mapped = libc.mallinfo2().hblkhd - before
libc.free(block)
print(took, mapped, libc.mallinfo2().fordblks)
"""
ALLOCATOR_ENV = ("MALLOC_", "GLIBC_TUNABLES", "LD_PRELOAD")  # what would change glibc's defaults in the child


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc"
                    or tuple(map(int, platform.libc_ver()[1].split(".")[:2])) < (2, 33),
                    reason="glibc 2.33 or later (mallinfo2)")
def test_keep_freed_memory_takes_large_blocks_from_the_heap_and_keeps_them_there():
    env = {k: v for k, v in os.environ.items() if not k.startswith(ALLOCATOR_ENV)}

    def run(mode):  # a fresh process each: the settings are process-wide
        took, mapped, free_in_heap = subprocess.run([sys.executable, "-c", HEAP_OR_MMAP, mode], cwd=ROOT, env=env,
                                                    capture_output=True, text=True, check=True).stdout.split()
        return took, int(mapped), int(free_in_heap)
    took, mapped, _ = run("default")
    assert took == "None" and mapped >= 64 * 2 ** 20  # by default glibc maps a block this large on its own
    took, mapped, free_in_heap = run("keep")
    assert took == "True" and mapped == 0  # taken from the heap...
    assert free_in_heap >= 64 * 2 ** 20  # ...and, once freed, kept there for the next one: not trimmed
