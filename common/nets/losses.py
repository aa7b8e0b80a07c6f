"""Contrastive losses for paired image/audio embeddings: NT-Xent and NT-Log.

Sign convention
---------------
Everything here is a LOSS TO MINIMISE.  The exam report (Problem 2) writes
NT-Xent as a log-likelihood to be MAXIMISED,

    exam NT-Xent = s+/tau - log(exp(s+/tau) + sum_k exp(s_k/tau)) = -nt_xent(...)

and likewise its NT-Log is the sum of log-sigmoids (= -nt_log(...)).  Its
gradients and its limits are therefore the negatives of ours: the exam's
tau -> inf limits "NT-Xent -> -log 2" and "NT-Log -> 2 log 0.5" read, in our
convention, nt_xent -> log 2 and nt_log -> 2 log 2 (one positive, one
negative; with K negatives log(K + 1) and (K + 1) log 2).

Notation: s+ = sim(u, v+), s_k = sim(u, v_k) for the K negatives,
sigma = logistic sigmoid, tau = temperature.

    nt_xent = -log softmax_0([s+, s_1 .. s_K] / tau)
            = logsumexp([s+, s_1 .. s_K] / tau) - s+/tau
    nt_log  = -log sigma(s+/tau + b) - sum_k log sigma(-(s_k/tau + b))

(b = 0 in the exam; SigLIP adds a learnable bias b.)  Both are computed with
logsumexp / logsigmoid so that tau = 1e-3 with |s| ~ 10 stays finite.

Similarity is "dot" (plain inner product) or "cosine" (inner product of the
L2-normalised vectors, so it ignores the embeddings' lengths).

Single-anchor functions take u [D] or a batch [B, D], v_pos with u's shape,
and v_neg [K, D] (the same negatives for every anchor) or [B, K, D] (one set
per anchor); tau is a positive float, a 0-dim tensor (e.g. a learnable
temperature) or, for batched u, a [B] tensor (one temperature per anchor,
handy for sweeps).  They return one loss per anchor: a 0-dim tensor or [B].
K = 0 is accepted: nt_xent is then exactly 0 and nt_log keeps only its
positive term (this is what an in-batch loss sees for a batch of one).

The batched modules `InBatchNTXent` (CLIP-style) and `AllPairsNTLog`
(SigLIP-style) use the other items of a batch as negatives; the batch size is
always read from the tensors, so a short last batch (even B = 1) works.

Measuring a trained ContrastiveModel (retrieval, its validation loss, its featurizer outputs and
linear probes on them) is common/training/retrieval.py's job.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..facts import SIMILARITIES

# CLIP-style bounds on the learnable inverse temperature 1/tau: at most 100
# (CLIP caps its logit scale at ln 100), at least 1 (tau never above 1, where
# the softmax over cosine similarities in [-1, 1] is already nearly flat).
DEFAULT_INV_TAU_RANGE = (1.0, 100.0)

# Initial learnable bias of AllPairsNTLog.  The bias is the prior log-odds that
# a pair (i, j) is a positive one.  In a batch of B pairs only B of the B^2
# pairs are positive, so the matching prior is log(1/(B-1)) = -ln(B - 1).
# SigLIP's b = -10 fits its batches of ~32k (ln 32k ~ 10.4); our batches are
# 64-256 pairs (-ln 63 = -4.1, -ln 255 = -5.5), where -10 would start with
# every positive pair at probability ~5e-5 and waste the first epochs moving
# the bias.  We take B = 128: -ln 127 ~ -4.84.
DEFAULT_LEARNED_BIAS = -math.log(127.0)


# --------------------------------------------------------------------------- #
# Similarities and shape checks
# --------------------------------------------------------------------------- #

def _check_similarity(similarity):
    if similarity not in SIMILARITIES:
        raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")


def _check_tau(tau):
    if isinstance(tau, torch.Tensor):
        if not bool((tau > 0).all()):
            raise ValueError("tau must be positive")
    elif not tau > 0:
        raise ValueError(f"tau must be positive, got {tau}")


def _per_pair(tau):
    """tau shaped to divide [..., K] similarities: a per-anchor tensor tau [B] gets a trailing axis."""
    if isinstance(tau, torch.Tensor) and tau.ndim > 0:
        return tau.unsqueeze(-1)
    return tau


def _check_shapes(u, v_pos, v_neg):
    if u.ndim not in (1, 2):
        raise ValueError(f"u must be [D] or [B, D], got shape {tuple(u.shape)}")
    if v_pos.shape != u.shape:
        raise ValueError(f"v_pos must have u's shape {tuple(u.shape)}, got {tuple(v_pos.shape)}")
    shared = v_neg.ndim == 2
    per_anchor = u.ndim == 2 and v_neg.ndim == 3 and v_neg.shape[0] == u.shape[0]
    if not (shared or per_anchor) or v_neg.shape[-1] != u.shape[-1]:
        raise ValueError(f"v_neg must be [K, D] or [B, K, D] for u of shape {tuple(u.shape)}, "
                         f"got {tuple(v_neg.shape)}")


def _normalise(similarity, *tensors):
    if similarity == "cosine":
        return tuple(F.normalize(t, dim=-1) for t in tensors)
    return tensors


def _pair_similarities(u, v_pos, v_neg, similarity):
    """s+ with u's batch shape ([] or [B]) and s_k with shape [K] or [B, K]."""
    _check_similarity(similarity)
    _check_shapes(u, v_pos, v_neg)
    u, v_pos, v_neg = _normalise(similarity, u, v_pos, v_neg)
    s_pos = (u * v_pos).sum(-1)
    s_neg = (u.unsqueeze(-2) * v_neg).sum(-1)
    return s_pos, s_neg


def similarity_matrix(x, y, similarity="dot"):
    """S[i, j] = sim(x_i, y_j) for x [B, D], y [C, D]."""
    _check_similarity(similarity)
    x, y = _normalise(similarity, x, y)
    return x @ y.transpose(-1, -2)


# --------------------------------------------------------------------------- #
# Single-anchor losses (minimised)
# --------------------------------------------------------------------------- #

def nt_xent(u, v_pos, v_neg, tau, similarity="dot"):
    """NT-Xent loss to minimise: -log of the softmax weight of the positive.

    loss = logsumexp([s+, s_1, .., s_K] / tau) - s+/tau  >= 0.

    The exam writes NT-Xent as the log-likelihood s+/tau - log Z (to be
    maximised), which is MINUS this loss; its limit "NT-Xent -> -log 2 as
    tau -> inf" is our loss -> log 2 (one negative; log(K+1) for K).

    u: [D] or [B, D]; v_pos: like u; v_neg: [K, D] or [B, K, D]; tau > 0
    (a float or a 0-dim tensor, e.g. a learnable temperature).  Returns a
    0-dim tensor or one loss per anchor [B].
    """
    _check_tau(tau)
    s_pos, s_neg = _pair_similarities(u, v_pos, v_neg, similarity)
    s_neg = s_neg.expand(*s_pos.shape, s_neg.shape[-1])
    logits = torch.cat([s_pos.unsqueeze(-1), s_neg], dim=-1) / _per_pair(tau)
    return torch.logsumexp(logits, dim=-1) - logits[..., 0]


def nt_log(u, v_pos, v_neg, tau, similarity="dot", bias=0.0):
    """NT-Logistic loss to minimise: a binary logistic loss per pair.

    loss = -log sigma(s+/tau + b) - sum_k log sigma(-(s_k/tau + b)),

    computed with F.logsigmoid.  b = 0 is the exam's NT-Log; a non-zero b is
    SigLIP's bias.  The exam writes NT-Log as the sum of log-sigmoids (to be
    maximised), i.e. MINUS this loss; its limit "NT-Log -> 2 log 0.5 as
    tau -> inf" is our loss -> 2 log 2 (one negative; (K+1) log 2 for K).

    Shapes as in `nt_xent`.
    """
    _check_tau(tau)
    s_pos, s_neg = _pair_similarities(u, v_pos, v_neg, similarity)
    z_pos = s_pos / tau + bias
    z_neg = s_neg / _per_pair(tau) + bias
    neg_term = -F.logsigmoid(-z_neg).sum(-1)
    return -F.logsigmoid(z_pos) + neg_term


# --------------------------------------------------------------------------- #
# Closed-form gradients w.r.t. the anchor (dot-product similarity)
# --------------------------------------------------------------------------- #

def nt_xent_grad_u(u, v_pos, v_neg, tau):
    """d nt_xent / d u for sim = dot product, any K >= 0.

    With p = softmax([s+, s_1 .. s_K] / tau):

        grad = ( -(1 - p_+) v+ + sum_k p_k v_k ) / tau.

    This is minus the exam's gradient of its (maximised) NT-Xent,
    (v+/tau)(1 - e^{s+/tau}/Z) - (v-/tau) e^{s-/tau}/Z, generalised from one
    negative to K.  Note -p_k is the exam's coefficient f_Xent (see f_xent).
    Returns a tensor of u's shape.
    """
    _check_tau(tau)
    s_pos, s_neg = _pair_similarities(u, v_pos, v_neg, "dot")
    s_neg = s_neg.expand(*s_pos.shape, s_neg.shape[-1])
    tau = _per_pair(tau)
    p = torch.softmax(torch.cat([s_pos.unsqueeze(-1), s_neg], dim=-1) / tau, dim=-1)
    p_pos, p_neg = p[..., :1], p[..., 1:]
    pull = -(1.0 - p_pos) * v_pos
    push = (p_neg.unsqueeze(-1) * v_neg).sum(-2)
    return (pull + push) / tau


def nt_log_grad_u(u, v_pos, v_neg, tau, bias=0.0):
    """d nt_log / d u for sim = dot product, any K >= 0.

        grad = ( -sigma(-(s+/tau + b)) v+ + sum_k sigma(s_k/tau + b) v_k ) / tau.

    Minus the exam's gradient sigma(-s+/tau) v+/tau - sigma(s-/tau) v-/tau
    (b = 0, one negative), generalised to K negatives and a bias.  The
    negative weights -sigma(s_k/tau + b) are the exam's f_Log (see f_log).
    Returns a tensor of u's shape.
    """
    _check_tau(tau)
    s_pos, s_neg = _pair_similarities(u, v_pos, v_neg, "dot")
    tau = _per_pair(tau)
    w_pos = torch.sigmoid(-(s_pos.unsqueeze(-1) / tau + bias))
    w_neg = torch.sigmoid(s_neg / tau + bias)
    push = (w_neg.unsqueeze(-1) * v_neg).sum(-2)
    return (-w_pos * v_pos + push) / tau


# --------------------------------------------------------------------------- #
# The exam's weighting coefficients of the negative direction
# --------------------------------------------------------------------------- #

def _as_tensors(*values):
    plain = all(isinstance(v, (int, float)) for v in values)
    tensors = [v if isinstance(v, torch.Tensor) else torch.as_tensor(v, dtype=torch.float64)
               for v in values]
    return plain, tensors


def f_xent(sim_pos, sim_neg, tau=1.0):
    """Exam's f_Xent: the coefficient of v-/tau in the gradient of its NT-Xent.

    One negative (sim_neg with sim_pos's shape, or broadcastable to it):
        f_Xent = -e^{s-/tau} / (e^{s+/tau} + e^{s-/tau}) = -sigma((s- - s+)/tau).
    K negatives (sim_neg with one more trailing dimension K than sim_pos):
        f_Xent_k = -softmax([s+, s_1 .. s_K] / tau)_k, returned with shape [..., K].

    This is the exam's (maximised-objective) sign; in our minimised loss the
    negative's weight is -f_Xent.  Python numbers in -> float out; otherwise a
    tensor.
    """
    plain, (sp, sn) = _as_tensors(sim_pos, sim_neg)
    if sn.ndim == sp.ndim + 1:
        logits = torch.cat([sp.unsqueeze(-1).expand(*sn.shape[:-1], 1), sn], dim=-1) / tau
        out = -torch.softmax(logits, dim=-1)[..., 1:]
    else:
        out = -torch.sigmoid((sn - sp) / tau)
    return float(out) if plain else out


def f_log(sim_neg, tau=1.0):
    """Exam's f_Log = -sigma(s-/tau): the coefficient of v-/tau in the gradient
    of its NT-Log.  Depends on the negative only (not on s+ or on the other
    negatives).  Elementwise; Python number in -> float out.
    """
    plain, (sn,) = _as_tensors(sim_neg)
    out = -torch.sigmoid(sn / tau)
    return float(out) if plain else out


# --------------------------------------------------------------------------- #
# Temperature (and bias) holder shared by the batched losses
# --------------------------------------------------------------------------- #

class _Temperature(nn.Module):
    """Stores log(1/tau); learnable or fixed.

    Learnable: `log_inv_tau` is an nn.Parameter, and the value used in every
    forward is clamped to [ln inv_tau_range[0], ln inv_tau_range[1]] (default
    1/tau in [1, 100], i.e. tau in [0.01, 1]).  Besides the clamp on the value
    used, the stored parameter is projected back into the range at the start
    of each forward (on `.data`, as TorchMultimodal does).  Without that
    projection an optimiser step could leave it outside the range, where the
    clamp's gradient is zero and the temperature would be stuck at the bound
    for good; with it, the stored value is at most one optimiser step outside
    and the temperature can move back inside as soon as the loss asks for it.

    Fixed: `log_inv_tau` is a buffer (saved in state_dict, never trained) and
    is not clamped, so any tau > 0 can be studied.
    """

    def __init__(self, tau, learn_tau, inv_tau_range):
        super().__init__()
        _check_tau(tau)
        lo, hi = inv_tau_range
        if not 0 < lo < hi:
            raise ValueError(f"inv_tau_range must be (lo, hi) with 0 < lo < hi, got {inv_tau_range}")
        if learn_tau and not lo <= 1.0 / tau <= hi:
            raise ValueError(f"initial tau={tau} outside the learnable range tau in "
                             f"[{1 / hi:g}, {1 / lo:g}] (inv_tau_range={inv_tau_range})")
        self.learn_tau = bool(learn_tau)
        self.log_inv_tau_min = math.log(lo)
        self.log_inv_tau_max = math.log(hi)
        value = torch.tensor(math.log(1.0 / tau), dtype=torch.float32)
        if self.learn_tau:
            self.log_inv_tau = nn.Parameter(value)
        else:
            self.register_buffer("log_inv_tau", value)

    def inv_tau(self):
        """The 1/tau used in the loss (a 0-dim tensor carrying the gradient if learnable)."""
        if not self.learn_tau:
            return self.log_inv_tau.exp()
        with torch.no_grad():
            self.log_inv_tau.data.clamp_(self.log_inv_tau_min, self.log_inv_tau_max)
        return self.log_inv_tau.clamp(self.log_inv_tau_min, self.log_inv_tau_max).exp()

    @property
    def tau(self):
        """Current effective temperature as a float (inside the clamp if learnable)."""
        value = float(self.log_inv_tau.detach())
        if self.learn_tau:
            value = min(max(value, self.log_inv_tau_min), self.log_inv_tau_max)
        return math.exp(-value)


class _BatchedContrastive(nn.Module):
    def __init__(self, similarity, tau, learn_tau, inv_tau_range):
        super().__init__()
        _check_similarity(similarity)
        self.similarity = similarity
        self.temperature = _Temperature(tau, learn_tau, inv_tau_range)

    @property
    def tau(self):
        """Current effective temperature (float)."""
        return self.temperature.tau

    @property
    def learn_tau(self):
        return self.temperature.learn_tau

    def _check_pair(self, x, y):
        if x.ndim != 2 or y.ndim != 2 or x.shape != y.shape:
            raise ValueError(f"x and y must both be [B, D] with equal shapes, "
                             f"got {tuple(x.shape)} and {tuple(y.shape)}")

    def logits(self, x, y):
        """Scaled similarities sim(x_i, y_j) / tau, shape [B, B] (no bias)."""
        self._check_pair(x, y)
        return similarity_matrix(x, y, self.similarity) * self.temperature.inv_tau()


class InBatchNTXent(_BatchedContrastive):
    """Symmetric in-batch NT-Xent (CLIP loss) for paired x [B, D], y [B, D].

    logits = sim(x_i, y_j) / tau; pair i is the positive of row i and of
    column i, the other B - 1 items are negatives.  The loss is the mean of the
    cross-entropy image -> audio (rows) and audio -> image (columns):

        loss = ( CE(logits, arange(B)) + CE(logits^T, arange(B)) ) / 2,

    i.e. the mean over anchors of `nt_xent` in both directions.  For B = 1
    there are no negatives and the loss is exactly 0 (finite, with zero
    gradient).

    similarity: "dot" or "cosine" (L2-normalise first).  tau: fixed
    temperature, or the initial one with learn_tau=True (then 1/tau is clamped
    to inv_tau_range, default [1, 100]).
    """

    def __init__(self, similarity="cosine", tau=0.1, learn_tau=False,
                 inv_tau_range=DEFAULT_INV_TAU_RANGE):
        super().__init__(similarity, tau, learn_tau, inv_tau_range)

    def forward(self, x, y):
        logits = self.logits(x, y)
        target = torch.arange(logits.shape[0], device=logits.device)
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))

    def extra_repr(self):
        return f"similarity={self.similarity!r}, tau={self.tau:.4g}, learn_tau={self.learn_tau}"


class AllPairsNTLog(_BatchedContrastive):
    """NT-Log over all B^2 pairs (SigLIP loss) for paired x [B, D], y [B, D].

    z_ij = sim(x_i, y_j) / tau + b; label_ij = +1 if i == j else -1;

        loss = -sum_ij logsigmoid(label_ij * z_ij) / B,

    i.e. the sum over anchors x_i of `nt_log` with positive y_i and the other
    B - 1 items as negatives, divided by B.  Each pair is an independent
    binary decision, so the loss needs no batch-wide normalisation and a batch
    of one still has its positive term.

    bias: fixed b (default 0, the exam's NT-Log).  learn_bias=True makes b an
    nn.Parameter initialised at `bias_init` (default DEFAULT_LEARNED_BIAS =
    -ln 127, the prior log-odds of a positive pair for B = 128; see its
    comment for why not SigLIP's -10).
    """

    def __init__(self, similarity="cosine", tau=0.1, learn_tau=False,
                 inv_tau_range=DEFAULT_INV_TAU_RANGE, bias_init=None, learn_bias=False):
        super().__init__(similarity, tau, learn_tau, inv_tau_range)
        self.learn_bias = bool(learn_bias)
        if bias_init is None:
            bias_init = DEFAULT_LEARNED_BIAS if self.learn_bias else 0.0
        value = torch.tensor(float(bias_init), dtype=torch.float32)
        if self.learn_bias:
            self.bias = nn.Parameter(value)
        else:
            self.register_buffer("bias", value)

    def forward(self, x, y):
        z = self.logits(x, y) + self.bias
        batch = z.shape[0]
        sign = 2.0 * torch.eye(batch, device=z.device, dtype=z.dtype) - 1.0
        return -F.logsigmoid(sign * z).sum() / batch

    def extra_repr(self):
        return (f"similarity={self.similarity!r}, tau={self.tau:.4g}, learn_tau={self.learn_tau}, "
                f"bias={float(self.bias.detach()):.4g}, learn_bias={self.learn_bias}")


def build_contrastive_loss(loss, similarity="cosine", tau=0.1, learn_tau=False, learn_bias=False, bias_init=None,
                           batch_size=128):
    """The loss of train_contrastive.py's flags (also to rebuild a saved run's model). bias_init: a
    number, None (-ln 127 when learned, else 0) or "prior" (-ln(batch_size - 1))."""
    if loss == "nt_xent":
        return InBatchNTXent(similarity, tau, learn_tau)
    if loss != "nt_log":
        raise ValueError(f"unknown contrastive loss {loss!r}; valid: nt_xent, nt_log")
    if bias_init == "prior":
        bias_init = -math.log(max(batch_size - 1, 1))
    return AllPairsNTLog(similarity, tau, learn_tau, learn_bias=learn_bias, bias_init=bias_init)
