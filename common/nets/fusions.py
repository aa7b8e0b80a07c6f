"""Fusion methods: how two modality features become one vector for the head.

Every vector fusion is an ``nn.Module`` built as ``Cls(n_img, n_aud, **widths)``
and called as ``fusion(f_img [B, n_img], f_aud [B, n_aud]) -> [B, out_dim]``.
The exam report (section 1.4, "1d") defines eight of them; this module keeps
its formulas and adds ``attention-tokens``, which attends over the conv maps
(real sequences) instead of one vector per modality.

Width options, passed as keywords (each class reads the ones it needs and
ignores the rest; unknown keywords are an error, so typos do not pass
silently):

- ``fused_dim`` (default 128): output width of ``bilinear`` and
  ``factorized``, token width d of ``attention-tokens``. 128 matches the
  featurizers' width, so the head fc(out_dim -> 64) is the same size as for
  ``add`` / ``attention``.
- ``hidden_dim`` (default 256): the shared hidden width h of ``factorized``.
  Twice the output width, as in factorised bilinear pooling, where the
  low-rank space is wider than the output.
- ``heads`` (default 4): attention heads of ``attention`` and
  ``attention-tokens`` (128 / 4 = 32 channels per head).

``FUSIONS`` maps each name to its class; ``build_fusion`` builds one by name.
Token fusions carry ``uses_tokens = True`` and take conv maps instead of
vectors (see ``AttentionTokensFusion``).
"""
import torch
import torch.nn.functional as F
from torch import nn

from ..facts import FUSION_NAMES

DEFAULT_WIDTHS = {"fused_dim": 128, "hidden_dim": 256, "heads": 4}


def _resolve_widths(widths, extra=()):
    """Fill in defaults; reject unknown keys and non-positive widths."""
    allowed = set(DEFAULT_WIDTHS) | set(extra)
    unknown = sorted(set(widths) - allowed)
    if unknown:
        raise TypeError(f"unknown fusion width option(s) {unknown}; valid: {sorted(allowed)}")
    out = dict(DEFAULT_WIDTHS)
    out.update({k: v for k, v in widths.items() if v is not None})
    for key in DEFAULT_WIDTHS:
        if not isinstance(out[key], int) or out[key] < 1:
            raise ValueError(f"fusion option {key} must be a positive integer, got {out[key]!r}")
    return out


def _require_equal(name, n_img, n_aud):
    if n_img != n_aud:
        raise ValueError(
            f"{name} fusion needs equal feature widths, got n_img={n_img} and n_aud={n_aud}")


def _require_divisible(name, width, heads):
    if width % heads:
        raise ValueError(f"{name} fusion: width {width} is not divisible by heads={heads}")


class Fusion(nn.Module):
    """Base class: records the input widths and the declared output width."""

    uses_tokens = False
    needs_equal_widths = False

    def __init__(self, n_img, n_aud):
        super().__init__()
        if self.needs_equal_widths:
            _require_equal(self.name, n_img, n_aud)
        self.n_img, self.n_aud = n_img, n_aud
        self.out_dim = None  # set by each subclass


class ConcatFusion(Fusion):
    """[f_img, f_aud]; out_dim = n_img + n_aud. No parameters, any widths."""

    name = "concat"

    def __init__(self, n_img, n_aud, **widths):
        _resolve_widths(widths)
        super().__init__(n_img, n_aud)
        self.out_dim = n_img + n_aud

    def forward(self, f_img, f_aud):
        return torch.cat([f_img, f_aud], dim=1)


class AddFusion(Fusion):
    """f_img + f_aud; needs n_img == n_aud; out_dim = n. No parameters."""

    name = "add"
    needs_equal_widths = True

    def __init__(self, n_img, n_aud, **widths):
        _resolve_widths(widths)
        super().__init__(n_img, n_aud)
        self.out_dim = n_img

    def forward(self, f_img, f_aud):
        return f_img + f_aud


class MulFusion(AddFusion):
    """f_img * f_aud (element-wise); needs n_img == n_aud; out_dim = n. No parameters."""

    name = "mul"

    def forward(self, f_img, f_aud):
        return f_img * f_aud


class MaxFusion(AddFusion):
    """max(f_img, f_aud) element-wise; needs n_img == n_aud; out_dim = n. No parameters.

    Where the two are equal the gradient is split evenly between them.
    """

    name = "max"

    def forward(self, f_img, f_aud):
        return torch.maximum(f_img, f_aud)


class AttentionFusion(Fusion):
    """LayerNorm(MhA(f_img, f_aud, f_aud) + MhA(f_aud, f_img, f_img)), the exam's formula.

    One shared ``nn.MultiheadAttention(n, heads, batch_first=True)`` serves
    both directions; each modality is a sequence of a single token.
    Needs n_img == n_aud (= n) and n divisible by ``heads``; out_dim = n.

    Caution, this is attention in name only. With a single key the softmax
    over keys is exactly 1 whatever the query and key are, so
    MhA(q, kv, kv) = out_proj(W_v kv + b_v) and the fusion is

        LayerNorm(out_proj(W_v f_aud + b_v) + out_proj(W_v f_img + b_v)),

    a learned linear map of f_img + f_aud followed by LayerNorm. The query and
    key projections (the first 2n rows of ``in_proj_weight`` and
    ``in_proj_bias``) cannot change the output and get an exactly zero
    gradient; ``zero_grad_rows`` names them. (Weight decay will still shrink
    them, which is harmless.) ``attention-tokens`` is the variant whose
    attention weights do something.
    """

    name = "attention"
    needs_equal_widths = True

    def __init__(self, n_img, n_aud, **widths):
        w = _resolve_widths(widths)
        super().__init__(n_img, n_aud)
        _require_divisible(self.name, n_img, w["heads"])
        self.mha = nn.MultiheadAttention(n_img, w["heads"], batch_first=True)
        self.norm = nn.LayerNorm(n_img)
        self.out_dim = n_img
        # parameter name -> rows [start, stop) that get no gradient by construction
        self.zero_grad_rows = {"mha.in_proj_weight": (0, 2 * n_img),
                               "mha.in_proj_bias": (0, 2 * n_img)}

    def forward(self, f_img, f_aud):
        img, aud = f_img.unsqueeze(1), f_aud.unsqueeze(1)  # [B, 1, n]
        # need_weights=True takes the explicit-softmax path, whose backward gives
        # the query/key projections an exactly zero gradient; the fused SDPA
        # kernel would give them rounding noise (~1e-6) instead.
        img_to_aud, _ = self.mha(img, aud, aud, need_weights=True)
        aud_to_img, _ = self.mha(aud, img, img, need_weights=True)
        return self.norm(img_to_aud + aud_to_img).squeeze(1)


class GatedFusion(Fusion):
    """Self-gating, as in the exam:

        f0 = [sigmoid(W_img f_img) * f_img, sigmoid(W_aud f_aud) * f_aud]
        out = sigmoid(W_0 f0) * f0

    W_img: n x n, W_aud: n x n, W_0: 2n x 2n, each an ``nn.Linear`` with a
    bias (so a gate can start half open independently of the input).
    out_dim = 2n. The exam requires n_img == n_aud and so does this class,
    although the formula itself would work for any widths.

    Each modality gates itself (like context gating); this is not the Gated
    Multimodal Unit of Arevalo et al., where one gate computed from both
    inputs mixes tanh-transformed features as z*h_img + (1 - z)*h_aud.
    """

    name = "gated"
    needs_equal_widths = True

    def __init__(self, n_img, n_aud, **widths):
        _resolve_widths(widths)
        super().__init__(n_img, n_aud)
        self.gate_img = nn.Linear(n_img, n_img)
        self.gate_aud = nn.Linear(n_aud, n_aud)
        self.gate_out = nn.Linear(n_img + n_aud, n_img + n_aud)
        self.out_dim = n_img + n_aud

    def forward(self, f_img, f_aud):
        f0 = torch.cat([torch.sigmoid(self.gate_img(f_img)) * f_img,
                        torch.sigmoid(self.gate_aud(f_aud)) * f_aud], dim=1)
        return torch.sigmoid(self.gate_out(f0)) * f0


class BilinearFusion(Fusion):
    """out_k = f_img^T W_k f_aud + b_k, W of shape [n_f, n_img, n_aud] (``nn.Bilinear``).

    Every pair (image feature, audio feature) interacts. Any widths;
    out_dim = n_f = ``fused_dim``. Parameters: n_f*n_img*n_aud + n_f
    (2,097,280 at the defaults, 128^3 + 128).
    """

    name = "bilinear"

    def __init__(self, n_img, n_aud, **widths):
        w = _resolve_widths(widths)
        super().__init__(n_img, n_aud)
        self.bilinear = nn.Bilinear(n_img, n_aud, w["fused_dim"])
        self.out_dim = w["fused_dim"]

    def forward(self, f_img, f_aud):
        # autocast has no rule for bilinear (it would mix bf16 inputs with fp32 weights):
        # this small product runs in fp32 under any autocast.
        with torch.autocast(f_img.device.type, enabled=False):
            return self.bilinear(f_img.float(), f_aud.float())


class FactorizedBilinearFusion(Fusion):
    """((f_img W_img) * (f_aud W_aud)) W_f + b_f, hidden width h = ``hidden_dim``.

    W_img: n_img x h, W_aud: n_aud x h, W_f: h x n_f with n_f = ``fused_dim``.
    The two projections carry no bias (the exam's formula), so the output is a
    pure bilinear form of rank at most h, a low-rank factorisation of
    ``bilinear``'s W; the output layer has a bias b_f, the counterpart of
    ``bilinear``'s b. Parameters: h*(n_img + n_aud + n_f) + n_f
    (98,432 at the defaults). Any widths; out_dim = n_f.
    """

    name = "factorized"

    def __init__(self, n_img, n_aud, **widths):
        w = _resolve_widths(widths)
        super().__init__(n_img, n_aud)
        h, n_f = w["hidden_dim"], w["fused_dim"]
        self.proj_img = nn.Linear(n_img, h, bias=False)
        self.proj_aud = nn.Linear(n_aud, h, bias=False)
        self.proj_out = nn.Linear(h, n_f)
        self.out_dim = n_f

    def forward(self, f_img, f_aud):
        return self.proj_out(self.proj_img(f_img) * self.proj_aud(f_aud))


def mean_pool_steps(x, k):
    """F.avg_pool1d(x, k, k) over the last axis. On the CPU, when no gradient is asked for
    (evaluation), it adds the k strided slices in fp32, left to right, and divides by k: the
    CPU kernel's own order and accumulator, so the same values bit for bit, 2x faster on the
    [128, 64, 500] bf16 audio map here (1.5 ms against 3.5). Under autograd, and on a GPU
    (whose division is a multiplication by the reciprocal), it is F.avg_pool1d itself."""
    if (torch.is_grad_enabled() and x.requires_grad) or x.device.type != "cpu":
        return F.avg_pool1d(x, k, k)
    x = x[..., :x.shape[-1] // k * k]  # a last, shorter window is dropped, as there
    total = x[..., 0::k].to(torch.promote_types(x.dtype, torch.float32), copy=True)  # the adds go in place
    for r in range(1, k):
        total.add_(x[..., r::k])
    return total.div_(k).to(x.dtype)


class AttentionTokensFusion(Fusion):
    """Cross-modal attention over the conv maps, treated as token sequences.

    Called as ``fusion(img_map [B, C_i, 7, 7], aud_map [B, C_a, 500])``:

    1. image tokens: the 7x7 = 49 positions, C_i channels each; audio tokens:
       the 500 time steps average-pooled by ``aud_pool`` (default 5) to 100
       steps of C_a channels (pooling makes the attention 5x cheaper; each
       token still covers only 20 ms at 8 kHz after the conv strides);
    2. a linear projection of each modality to width d = ``fused_dim`` plus a
       learned positional embedding per token position;
    3. image tokens attend to audio tokens and audio tokens to image tokens,
       two separate ``nn.MultiheadAttention(d, heads, batch_first=True)``
       (one per direction: the queries of the two modalities ask different
       questions), each with a residual connection and LayerNorm;
    4. mean over the tokens of each modality, then concatenate
       (``combine="concat"``, out_dim = 2d, the default) or add
       (``combine="sum"``, out_dim = d) the two pooled vectors.

    The token counts are fixed by the positional embeddings (``img_tokens``
    49, ``aud_tokens`` 100 after pooling); other map sizes are rejected.
    """

    name = "attention-tokens"
    uses_tokens = True
    _extra = ("img_tokens", "aud_tokens", "aud_pool", "combine")

    def __init__(self, img_channels, aud_channels, img_tokens=49, aud_tokens=100,
                 aud_pool=5, combine="concat", **widths):
        w = _resolve_widths(widths)
        super().__init__(img_channels, aud_channels)
        d, heads = w["fused_dim"], w["heads"]
        _require_divisible(self.name, d, heads)
        if combine not in ("concat", "sum"):
            raise ValueError(f"attention-tokens fusion: combine must be 'concat' or 'sum', got {combine!r}")
        self.img_tokens, self.aud_tokens, self.aud_pool = img_tokens, aud_tokens, aud_pool
        self.combine = combine
        self.proj_img = nn.Linear(img_channels, d)
        self.proj_aud = nn.Linear(aud_channels, d)
        self.pos_img = nn.Parameter(torch.randn(1, img_tokens, d) * 0.02)
        self.pos_aud = nn.Parameter(torch.randn(1, aud_tokens, d) * 0.02)
        self.img_from_aud = nn.MultiheadAttention(d, heads, batch_first=True)
        self.aud_from_img = nn.MultiheadAttention(d, heads, batch_first=True)
        self.norm_img = nn.LayerNorm(d)
        self.norm_aud = nn.LayerNorm(d)
        self.out_dim = 2 * d if combine == "concat" else d

    def tokens(self, img_map, aud_map):
        """Conv maps -> projected, position-tagged tokens [B, 49, d] and [B, 100, d]."""
        img = img_map.flatten(2).transpose(1, 2)  # [B, H*W, C_i]
        aud = aud_map
        if self.aud_pool > 1:
            aud = mean_pool_steps(aud, self.aud_pool)
        aud = aud.transpose(1, 2)  # [B, T, C_a]
        if img.shape[1] != self.img_tokens or aud.shape[1] != self.aud_tokens:
            raise ValueError(
                f"attention-tokens fusion expects {self.img_tokens} image and {self.aud_tokens} "
                f"audio tokens, got {img.shape[1]} and {aud.shape[1]}")
        return self.proj_img(img) + self.pos_img, self.proj_aud(aud) + self.pos_aud

    def forward(self, img_map, aud_map):
        img, aud = self.tokens(img_map, aud_map)
        img_att, _ = self.img_from_aud(img, aud, aud, need_weights=False)
        aud_att, _ = self.aud_from_img(aud, img, img, need_weights=False)
        img = self.norm_img(img + img_att).mean(dim=1)
        aud = self.norm_aud(aud + aud_att).mean(dim=1)
        if self.combine == "concat":
            return torch.cat([img, aud], dim=1)
        return img + aud


FUSIONS = {cls.name: cls for cls in (
    ConcatFusion, AddFusion, MulFusion, MaxFusion, AttentionFusion, GatedFusion,
    BilinearFusion, FactorizedBilinearFusion, AttentionTokensFusion)}
assert tuple(FUSIONS) == FUSION_NAMES, "common/facts.py's FUSION_NAMES must list this registry, in its order"


def build_fusion(name, n_img, n_aud, **widths):
    """Build the fusion called ``name`` for inputs of widths n_img, n_aud.

    For ``attention-tokens`` n_img / n_aud are the conv map channel counts.
    Width options set to None fall back to the defaults.
    """
    if name not in FUSIONS:
        raise ValueError(f"unknown fusion {name!r}; valid: {', '.join(FUSIONS)}")
    cls = FUSIONS[name]
    widths = {k: v for k, v in widths.items() if v is not None}
    _resolve_widths(widths, getattr(cls, "_extra", ()))
    return cls(n_img, n_aud, **widths)
