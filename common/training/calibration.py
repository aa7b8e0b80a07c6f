"""--calibrate: late fusion's two heads, each divided by a temperature fitted on the validation pairs.

Late fusion averages the image head's and the audio head's logits. A head that is confidently wrong
(an audio head on a voice it never heard) then overrides a good other view. After training, with the
best weights back, one temperature per view is fitted by minimising the validation cross-entropy of
(z_image / T_image + z_audio / T_audio) / 2; with --val-speaker the validation pairs are an unheard
voice, so a head that does not carry over to new voices is turned down. The weights are untouched:
only LateFusionNet's `view_temperature` buffer (1, 1 while training) changes.

combine.py --gate confidence fits a per-pair weight instead (fit_confidence_gate): each head's logits
times exp(a + b * H), H the entropy of that head's own softmax on the pair, so that a head unsure of a
pair (a ruined image, a drowned word) counts for less in that pair alone.
"""
import torch
import torch.nn.functional as F

from ..nets.models import confidence_scaled
from .loop import autocast, batch_inputs

TEMPERATURE_RANGE = (0.05, 100.0)


@torch.no_grad()
def branch_logits(model, split, index, device, precision, batch_size=512):
    """Each head's logits (fp32, on the CPU) on split[index]: ([N, 10], [N, 10])."""
    model.eval()
    image, audio = [], []
    for lo in range(0, len(index), batch_size):
        with autocast(precision, device):
            i, a = model.branch_logits(*batch_inputs(split, index[lo:lo + batch_size], ("image", "audio"), device))
        image.append(i.float().cpu())
        audio.append(a.float().cpu())
    return torch.cat(image), torch.cat(audio)


def minimised_from_zero(shape, loss_at):
    """The parameters (a tensor of `shape`, detached) that one L-BFGS run from zeros finds for loss_at."""
    params = torch.zeros(shape, requires_grad=True)
    optimizer = torch.optim.LBFGS([params], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = loss_at(params)
        loss.backward()
        return loss

    optimizer.step(closure)
    return params.detach()


def fit_view_temperatures(model, split, index, device, precision):
    """Fit, set and return {"view_temperature": [T_image, T_audio], "val_loss_before": ...,
    "val_loss_after": ...} on the validation pairs split[index] (L-BFGS over the log-temperatures)."""
    image, audio = branch_logits(model, split, index, device, precision)
    label = split.label[index]
    low, high = (torch.tensor(v).log() for v in TEMPERATURE_RANGE)

    def loss_at(log_temps):
        temps = log_temps.clamp(low, high).exp()
        return F.cross_entropy((image / temps[0] + audio / temps[1]) / 2, label)

    before = loss_at(torch.zeros(2)).item()
    temps = minimised_from_zero((2,), loss_at).clamp(low, high).exp()
    model.view_temperature.copy_(temps.to(model.view_temperature.device))
    return {"view_temperature": temps.tolist(), "val_loss_before": before, "val_loss_after": loss_at(temps.log()).item()}


def fit_confidence_gate(image, audio, label):
    """Fit and return the gate [[a_image, b_image], [a_audio, b_audio]] minimising the cross-entropy of
    (confidence_scaled(image, gate[0]) + confidence_scaled(audio, gate[1])) / 2 (LateFusionNet's forward)
    on the heads' logits image, audio [N, 10] (fp32) and labels [N], by L-BFGS from 0 (the plain average);
    with the loss before and after: {"view_gate", "loss_before", "loss_after"}."""
    def loss_at(g):
        return F.cross_entropy((confidence_scaled(image, g[0]) + confidence_scaled(audio, g[1])) / 2, label)

    before = loss_at(torch.zeros(2, 2)).item()
    fitted = minimised_from_zero((2, 2), loss_at)
    if not torch.isfinite(fitted).all() or loss_at(fitted).item() > before:  # never worse than the plain average
        fitted = torch.zeros(2, 2)
    return {"view_gate": fitted.tolist(), "loss_before": before, "loss_after": loss_at(fitted).item()}
