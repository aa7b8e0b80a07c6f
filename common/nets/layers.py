"""Faster stand-ins for three torch layers the featurizers use: the same parameters, state-dict keys
and results (up to float summation order), so that the featurizers in featurizers.py read like the
exam while a step costs less on a laptop CPU (docs/PERFORMANCE.md has the measurements).
"""
import torch
import torch.nn.functional as F
from torch import nn


class Dropout(nn.Module):
    """nn.Dropout's semantics with a cheaper mask: in training each value is zeroed with
    probability p and the kept ones are scaled by 1/(1-p); in eval it is the identity.

    torch's dropout draws one Bernoulli number per value, which costs about as much as a
    convolution on the 64 x 32,000 audio map. At the exam's p = 0.5 one random bit per value
    is enough: the mask comes from random bytes, eight values per byte. Other p draw uniform
    numbers, still cheaper than bernoulli_. The draws come from torch's global generator, so
    --seed and the checkpointed RNG state govern them as before. No parameters or buffers:
    state dicts are unchanged.
    """

    def __init__(self, p=0.5):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def keep_mask(self, x):
        """A bool tensor shaped like x: True where the value is kept."""
        if self.p == 0.5:
            n = x.numel()
            random_bytes = torch.empty((n + 7) // 8, dtype=torch.uint8, device=x.device).random_()
            shifts = torch.arange(8, dtype=torch.uint8, device=x.device)
            bits = (random_bytes.unsqueeze(1) >> shifts) & 1
            return bits.view(-1)[:n].view(x.shape).bool()
        return torch.rand(x.shape, device=x.device) >= self.p

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        return x * self.keep_mask(x).to(x.dtype).mul_(1.0 / (1.0 - self.p))

    def extra_repr(self):
        return f"p={self.p}"


class PhaseSplitConv1d(nn.Conv1d):
    """A strided nn.Conv1d computed as a stride-1 convolution over the input's stride phases.

    For kernel k = q * s and stride s, output t is sum_j sum_r x[s(t+j) + r] w[s j + r]:
    regrouping the input as s channels per input channel (phase r) and the kernel as
    q taps per phase gives the same sums with stride 1. For the exam's first audio layer
    (1 channel, 100 taps, stride 4) oneDNN runs that form 1.5-3x faster, forward and
    backward. Same parameters, shapes and state-dict keys as nn.Conv1d; other shapes fall
    back to it. Results equal nn.Conv1d's up to float summation order.
    """

    def forward(self, x):
        (k,), (s,) = self.kernel_size, self.stride
        if isinstance(self.padding, str) or s == 1 or k % s or self.dilation != (1,) or self.groups != 1 \
                or self.padding_mode != "zeros":
            return super().forward(x)
        (p,) = self.padding
        out_len = (x.shape[-1] + 2 * p - k) // s + 1
        x = F.pad(x, (p, p + (-(x.shape[-1] + 2 * p)) % s))  # zero padding, then whole phases
        batch, channels, length = x.shape
        x = x.view(batch, channels, length // s, s).transpose(2, 3).reshape(batch, channels * s, length // s)
        w = self.weight.view(self.out_channels, channels, k // s, s).transpose(2, 3)
        w = w.reshape(self.out_channels, channels * s, k // s)
        return F.conv1d(x, w, self.bias)[..., :out_len].contiguous()


class MaxPool2x2(nn.MaxPool2d):
    """nn.MaxPool2d(2, 2) that, when no gradient is asked for (evaluation), takes the max of the
    four strided slices instead: the same values, bit for bit, and 5-10x faster on this CPU than
    ATen's channels-first kernel (bf16 [128, 32, 28, 28]: 9.8 ms against 1.1 ms). Under autograd it
    is nn.MaxPool2d itself, so training, whose gradient goes to one element of a tied window,
    is unchanged."""

    def __init__(self):
        super().__init__(kernel_size=2, stride=2)

    def forward(self, x):
        if (torch.is_grad_enabled() and x.requires_grad) or x.dim() != 4:
            return super().forward(x)
        x = x[..., :x.shape[-2] // 2 * 2, :x.shape[-1] // 2 * 2]  # an odd last row or column is dropped, as there
        return torch.maximum(torch.maximum(x[..., 0::2, 0::2], x[..., 0::2, 1::2]),
                             torch.maximum(x[..., 1::2, 0::2], x[..., 1::2, 1::2]))
