"""Measuring contrastive embeddings and a trained ContrastiveModel: cross-modal retrieval (the exact
partner, and the query's digit at the top-k, overall and by noise regime), the validation loss,
the frozen featurizer outputs and projections, and linear probes on them. The losses themselves
are common/nets/losses.py's.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..nets.losses import similarity_matrix
from .loop import autocast, batch_inputs


# --------------------------------------------------------------------------- #
# Retrieval metrics
# --------------------------------------------------------------------------- #

CLASS_KS = (1, 5)  # class-level retrieval is reported at top-1 and top-5
RANKING_ROWS = 512  # queries ranked at once


@torch.no_grad()
def retrieval_from_similarity(sims, labels=None, ks=CLASS_KS):
    """Retrieval both ways from a similarity matrix S [B, B], S[i, j] = sim(image i, audio j).

    Instance level: the share of queries whose most similar item of the other view is their own
    partner (recall@1). Class level (labels [B] given): for each k in ks, the share of queries
    with at least one item of their digit among the k most similar items of the other view
    (digit@k), both directions; and the digit-only ceiling of recall@1.

    Why the ceiling: each pair joins a random image of a digit to a random recording of that
    digit, so beyond the digit nothing ties an image to its own recording (the noise regime
    ties them weakly: an image destroyed by noise comes with mild audio). A ranking that knows
    the digit perfectly finds the partner among the n_c items of that digit, by chance: its
    expected recall@1 is mean_i 1 / n_{c(i)} = (digits present) / B, about 10 / B.
    Ties go to the lowest index (torch.argmax / a stable sort).
    """
    if sims.ndim != 2 or sims.shape[0] != sims.shape[1]:
        raise ValueError(f"the similarity matrix must be square [B, B], got {tuple(sims.shape)}")
    batch = sims.shape[0]
    target = torch.arange(batch, device=sims.device)
    out = {"n": batch,
           "recall@1_img2aud": (sims.argmax(dim=1) == target).float().mean().item(),  # rows: image queries
           "recall@1_aud2img": (sims.argmax(dim=0) == target).float().mean().item()}  # columns: audio queries
    if labels is None:
        return out
    labels = torch.as_tensor(labels, device=sims.device)
    if labels.shape != (batch,):
        raise ValueError(f"labels must have shape ({batch},), got {tuple(labels.shape)}")
    out["recall@1_ceiling"] = len(torch.unique(labels)) / batch if batch else float("nan")
    top = max(ks)
    for direction, by_query in (("img2aud", sims), ("aud2img", sims.t())):
        hits = {k: 0 for k in ks}
        for lo in range(0, batch, RANKING_ROWS):  # a few queries at a time: the ranking is [rows, B] int64
            ranked = torch.sort(by_query[lo:lo + RANKING_ROWS], dim=1, descending=True, stable=True).indices[:, :top]
            same_digit = labels[ranked] == labels[lo:lo + RANKING_ROWS, None]  # [query, rank]
            for k in ks:
                hits[k] += int(same_digit[:, :k].any(dim=1).sum())
        for k in ks:
            out[f"digit@{k}_{direction}"] = hits[k] / batch
    return out


@torch.no_grad()
def retrieval_metrics(x, y, labels=None, similarity="cosine", ks=CLASS_KS):
    """Retrieval between paired embeddings x [B, D] (image) and y [B, D] (audio): see
    retrieval_from_similarity. `similarity` should be the one they were trained with."""
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"x and y must both be [B, D] with equal shapes, "
                         f"got {tuple(x.shape)} and {tuple(y.shape)}")
    return retrieval_from_similarity(similarity_matrix(x.float(), y.float(), similarity), labels, ks)


# ---------------------------------------------------------------- measuring a trained model

PROBE_WEIGHT_DECAY = 1e-3  # L2 penalty of the linear probes on frozen features


@torch.inference_mode()
def validate(model, split, index, batch_size, device, precision):
    """One eval-mode pass over split[index]: the mean contrastive loss and the projections of every pair
    (on the CPU). The loss is taken on the fixed batches index.split(batch_size), weighted by size:
    the same partition every epoch keeps it comparable across epochs (it depends on which pairs
    share a batch), and the forward is the model's own (projections under autocast, the loss in fp32)."""
    model.eval()
    total, n, emb = 0.0, 0, {"image": [], "audio": []}
    for idx in index.split(batch_size):
        with autocast(precision, device):
            emb_image, emb_audio = model.embed(*batch_inputs(split, idx, ("image", "audio"), device))
        with torch.autocast(emb_image.device.type, enabled=False):
            loss = model.loss(emb_image.float(), emb_audio.float())
        total += loss.item() * len(idx)
        n += len(idx)
        emb["image"].append(emb_image.float().cpu())
        emb["audio"].append(emb_audio.float().cpu())
    return total / max(n, 1), torch.cat(emb["image"]), torch.cat(emb["audio"])


@torch.no_grad()
def retrieval_by_group(x, y, labels, groups, group_names, similarity="cosine", ks=CLASS_KS):
    """Class-level retrieval (digit@k, both directions) over the whole gallery of paired x (image)
    and y (audio), reported for all queries and for the queries of each group (e.g. noise regime).

    groups: an int [B] tensor, group_names[g] the name of group g. A query of group g is ranked
    against every item of the other view, whatever its group. Returns {"all": {...}, name: {...}}
    with digit@k_img2aud / digit@k_aud2img and n; a group with no queries gets n = 0 and None."""
    labels, groups = torch.as_tensor(labels), torch.as_tensor(groups)
    sims = similarity_matrix(x.float(), y.float(), similarity)
    top = max(ks)
    hits = {}  # (direction, k) -> bool [B]: has query i a same-digit item among its top k
    for direction, by_query in (("img2aud", sims), ("aud2img", sims.t())):
        rows = []
        for lo in range(0, len(labels), RANKING_ROWS):
            ranked = torch.sort(by_query[lo:lo + RANKING_ROWS], dim=1, descending=True, stable=True).indices[:, :top]
            rows.append(labels[ranked] == labels[lo:lo + RANKING_ROWS, None])
        same = torch.cat(rows) if rows else torch.zeros(0, top, dtype=torch.bool)
        for k in ks:
            hits[direction, k] = same[:, :k].any(dim=1)
    out = {}
    for name, mask in [("all", torch.ones(len(labels), dtype=torch.bool))] + \
            [(n, groups == g) for g, n in enumerate(group_names)]:
        count = int(mask.sum())
        out[name] = {"n": count, **{f"digit@{k}_{d}": (hits[d, k][mask].float().mean().item() if count else None)
                                    for d in ("img2aud", "aud2img") for k in ks}}
    return out


@torch.inference_mode()
def encode(model, split, index, device, precision, batch_size=512):
    """Eval-mode featurizer outputs and projections of split[index], on the CPU."""
    model.eval()
    out = {"feat_image": [], "feat_audio": [], "emb_image": [], "emb_audio": []}
    for idx in index.split(batch_size):
        with autocast(precision, device):
            f_img, f_aud = model.features(*batch_inputs(split, idx, ("image", "audio"), device))
            emb_img, emb_aud = model.image_proj(f_img), model.audio_proj(f_aud)
        for key, value in (("feat_image", f_img), ("feat_audio", f_aud),
                           ("emb_image", emb_img), ("emb_audio", emb_aud)):
            out[key].append(value.float().cpu())
    return {k: torch.cat(v) if v else torch.empty(0, 128) for k, v in out.items()}


def fit_linear_probe(x, y, steps, weight_decay=PROBE_WEIGHT_DECAY):
    """Multinomial logistic regression on fixed features: full-batch L-BFGS, zero start, fixed steps.

    The features are standardised with the training mean and std (dead ReLU
    units, std 0, stay 0). Zero initialisation and full batches make the fit
    deterministic without any random numbers. Returns a function features -> logits, which
    carries the standardisation (.mean, .std) and the fitted nn.Linear (.linear).
    """
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    x = (x - mean) / std
    probe = nn.Linear(x.shape[1], 10)
    nn.init.zeros_(probe.weight)
    nn.init.zeros_(probe.bias)
    optimizer = torch.optim.LBFGS(probe.parameters(), lr=1.0, max_iter=steps, history_size=20,
                                  line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(probe(x), y) + weight_decay * probe.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)

    def predict(z):
        return probe((z - mean) / std).detach()
    predict.mean, predict.std, predict.linear = mean, std, probe  # for a fine-tuning that starts from the probe
    return predict


def probe_accuracies(train_codes, train_labels, eval_sets, steps):
    """Accuracy of a probe per feature set (image, audio, both) on each labelled eval set."""
    out = {name: {} for name in eval_sets}
    for which in ("image", "audio", "both"):
        def pick(codes):
            if which == "both":
                return torch.cat([codes["feat_image"], codes["feat_audio"]], 1)
            return codes[f"feat_{which}"]
        predict = fit_linear_probe(pick(train_codes), train_labels, steps)
        for name, (codes, labels) in eval_sets.items():
            out[name][which] = (predict(pick(codes)).argmax(1) == labels).float().mean().item()
    return out
