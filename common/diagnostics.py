"""--log-diagnostics: what goes wrong inside a training that never leaves chance, logged per epoch.

Three measurements, written to TensorBoard under diag/ and nowhere else:

- diag/grad_norm/<module>: the gradient norm of each top-level module (the featurizers, the
  fusion, the head, ...), averaged over the epoch's steps; diag/grad_norm_max/<module>, the
  largest single step (a first step far larger than the rest is the too-large-step signature);
- diag/dead_relu/<layer>: the share of units of each ReLU (nn.ReLU modules, and the featurizers'
  128-d outputs, which end in a ReLU) that are zero for every pair of a fixed batch of 256
  validation pairs;
- diag/attention_entropy/<layer>: the mean entropy (nats) of the attention weights of each
  nn.MultiheadAttention on that batch, beside its maximum ln(keys): near 0 is a saturated
  softmax, near the maximum a uniform one.

Off by default, and then free: no hook is registered and nothing is computed. On, it reads
gradients after backward() and runs the model once per epoch in eval mode under no_grad on the
fixed batch, which changes no weight, no gradient and no random stream (eval mode draws no
dropout), so a seeded run gives the same metrics.json with and without it.
"""
import math

import torch
from torch import nn

DIAGNOSTIC_PAIRS = 256


class Diagnostics:
    def __init__(self, model, enabled):
        self.model, self.enabled = model, enabled
        self._sums, self._max, self._steps = {}, {}, 0

    def after_backward(self):
        """Add this step's per-module gradient norms (call between backward() and the optimizer step)."""
        if not self.enabled:
            return
        for name, module in self.model.named_children():
            grads = [p.grad.detach().float().norm() for p in module.parameters() if p.grad is not None]
            if grads:
                norm = float(torch.stack(grads).norm())
                self._sums[name] = self._sums.get(name, 0.0) + norm
                self._max[name] = max(self._max.get(name, 0.0), norm)
        self._steps += 1

    @torch.no_grad()
    def end_epoch(self, writer, epoch, inputs):
        """Log the epoch's gradient norms, and the dead units and attention entropy on `inputs`
        (the fixed validation batch: a tuple of model inputs)."""
        if not self.enabled:
            return {}
        scalars = {f"diag/grad_norm/{k}": v / max(self._steps, 1) for k, v in self._sums.items()}
        scalars.update({f"diag/grad_norm_max/{k}": v for k, v in self._max.items()})
        self._sums, self._max, self._steps = {}, {}, 0
        scalars.update(self._activations(inputs))
        for tag, value in scalars.items():
            writer.add_scalar(tag, value, epoch)
        return scalars

    def _activations(self, inputs):
        was_training = self.model.training
        self.model.eval()
        found, hooks = {}, []

        def dead_share(name):
            def hook(module, args, output):
                x = output.detach().float()
                units = x.transpose(0, 1).reshape(x.shape[1], -1) if x.ndim > 2 else x.t()  # [unit, pairs x positions]
                found[f"diag/dead_relu/{name}"] = float((units.amax(dim=1) <= 0).float().mean())
            return hook

        def entropy(name):
            def hook(module, args, kwargs, output):
                kwargs = {**kwargs, "need_weights": True, "average_attn_weights": True}
                _, weights = module.forward(*args, **kwargs)  # the same call, now asking for its weights
                w = weights.float().clamp_min(1e-12)
                found[f"diag/attention_entropy/{name}"] = float(-(w * w.log()).sum(-1).mean())
                found[f"diag/attention_entropy_max/{name}"] = math.log(w.shape[-1])
            return hook

        for name, module in self.model.named_modules():
            if isinstance(module, nn.ReLU):
                hooks.append(module.register_forward_hook(dead_share(name)))
            elif isinstance(module, nn.MultiheadAttention):
                hooks.append(module.register_forward_hook(entropy(name), with_kwargs=True))
            elif name.endswith("_featurizer") or name == "featurizer":
                hooks.append(module.register_forward_hook(dead_share(f"{name}.out")))
        try:
            self.model(*inputs)
        finally:
            for h in hooks:
                h.remove()
            self.model.train(was_training)
        return found


def diagnostic_batch(split, val_index, views, device):
    """The fixed batch the activations are read on: the first DIAGNOSTIC_PAIRS validation pairs."""
    index = val_index[:DIAGNOSTIC_PAIRS]
    return tuple(getattr(split, view)[index].to(device) for view in views)
