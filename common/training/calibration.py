"""--calibrate: late fusion's two heads, each divided by a temperature fitted on the validation pairs.

Late fusion averages the image head's and the audio head's logits. A head that is confidently wrong
(an audio head on a voice it never heard) then overrides a good other view. After training, with the
best weights back, one temperature per view is fitted by minimising the validation cross-entropy of
(z_image / T_image + z_audio / T_audio) / 2; with --val-speaker the validation pairs are an unheard
voice, so a head that does not carry over to new voices is turned down. The weights are untouched:
only LateFusionNet's `view_temperature` buffer (1, 1 while training) changes.
"""
import torch
import torch.nn.functional as F

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


def fit_view_temperatures(model, split, index, device, precision):
    """Fit, set and return {"view_temperature": [T_image, T_audio], "val_loss_before": ...,
    "val_loss_after": ...} on the validation pairs split[index] (L-BFGS over the log-temperatures)."""
    image, audio = branch_logits(model, split, index, device, precision)
    label = split.label[index]
    log_t = torch.zeros(2, requires_grad=True)
    low, high = (torch.tensor(v).log() for v in TEMPERATURE_RANGE)

    def loss_at(log_temps):
        temps = log_temps.clamp(low, high).exp()
        return F.cross_entropy((image / temps[0] + audio / temps[1]) / 2, label)

    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = loss_at(log_t)
        loss.backward()
        return loss

    before = loss_at(torch.zeros(2)).item()
    optimizer.step(closure)
    temps = log_t.detach().clamp(low, high).exp()
    model.view_temperature.copy_(temps.to(model.view_temperature.device))
    return {"view_temperature": temps.tolist(), "val_loss_before": before, "val_loss_after": loss_at(temps.log()).item()}
