"""common/nets/layers.py: the faster dropout, strided conv and max pooling equal the torch layers they stand in for."""
import pytest
import torch
import torch.nn.functional as F

from common.nets.featurizers import AudioFeaturizer
from common.nets.layers import Dropout, MaxPool2x2, PhaseSplitConv1d


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


def test_audio_featurizer_keeps_the_exam_layers_and_state_dict():
    f = AudioFeaturizer()
    assert isinstance(f.conv[0], torch.nn.Conv1d)  # a Conv1d subclass: same parameters and keys
    shapes = {k: tuple(v.shape) for k, v in f.state_dict().items()}
    assert shapes == {"conv.0.weight": (32, 1, 100), "conv.0.bias": (32,), "conv.2.weight": (64, 32, 25),
                      "conv.2.bias": (64,), "fc.weight": (128, 32000), "fc.bias": (128,)}
    assert f.conv[0](torch.zeros(3, 1, 8000)).shape == (3, 32, 2000)
