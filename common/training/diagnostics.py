"""--log-diagnostics: what goes wrong inside a training that never leaves chance, logged per epoch
(diag/...) and, for the first TRACE_STEPS optimizer steps, step by step (diag_step/...).

Three measurements, written to TensorBoard and nowhere else:

- diag/grad_norm/<module>: the gradient norm of each top-level module (the featurizers, the
  fusion, the head, ...), averaged over the epoch's steps; diag/grad_norm_max/<module>, the
  largest single step (a first step far larger than the rest is the too-large-step signature);
- diag/dead_relu/<layer>: the share of units of each ReLU (nn.ReLU modules, and the featurizers'
  128-d outputs, which end in a ReLU) that are zero for every pair of a fixed batch of 256
  validation pairs;
- diag/attention_entropy/<layer>: the mean entropy (nats) of the attention weights of each
  nn.MultiheadAttention on that batch, beside its maximum ln(keys): near 0 is a saturated
  softmax, near the maximum a uniform one.

diag_step/grad_norm/<module>, diag_step/dead_relu/<layer> and diag_step/attention_entropy/<layer>
are the same measurements at each of the first TRACE_STEPS steps (x axis: the step, from 1), taken
on the weights that step's gradient was computed on (step 1: the initial weights): where a run
that never trains goes wrong in its first epoch. They go to the run folder's TRACE_FOLDER/, a
TensorBoard run of their own, so that a resume (which purges the run's later epochs) keeps them; a
resumed run does not log them again. The flag may be switched on or off at a resume (it changes no
number): an epoch resumed in its middle averages its gradient norms over the steps after the resume.

Off by default, and then free: no hook is registered and nothing is computed. On, it reads
gradients after backward() and runs the model once per epoch (and at each traced step) in eval
mode under no_grad on the fixed batch, which changes no weight, no gradient and no random stream
(eval mode draws no dropout), so a seeded run gives the same metrics.json with and without it.
"""
import math
import os

import torch
from torch import nn

DIAGNOSTIC_PAIRS = 256
TRACE_STEPS = 250  # the first epoch of the study's runs (14,048 training pairs / 64 = 220 steps), and a few more
TRACE_FOLDER = "diag_steps"  # inside the run folder: the first steps' trace, apart from the epochs' events


def start_diagnostics(model, args, writer, split, val_index, views, device):
    """The run's Diagnostics: off (and free) without --log-diagnostics; a resumed run traces no first steps."""
    if not args.log_diagnostics:
        return Diagnostics(model, False)
    if args.resume:
        print("note: --log-diagnostics on a resumed run: the first steps' trace is not logged again, and an epoch "
              "resumed in its middle averages its gradient norms over the steps after the resume")
    return Diagnostics(model, True, writer, diagnostic_batch(split, val_index, views, device),
                       trace_steps=0 if args.resume else TRACE_STEPS)


class Diagnostics:
    def __init__(self, model, enabled, writer=None, inputs=None, trace_steps=0):
        """inputs: the fixed validation batch (a tuple of model inputs) the activations are read on."""
        self.model, self.enabled, self.writer, self.inputs = model, enabled, writer, inputs
        self.trace_steps, self._step, self._trace = trace_steps, 0, None
        self._sums, self._max, self._steps = {}, {}, 0

    def after_backward(self):
        """Add this step's per-module gradient norms (call between backward() and the optimizer step);
        at the first trace_steps steps, log them and the activations of these weights too."""
        if not self.enabled:
            return
        norms = {}
        for name, module in self.model.named_children():
            grads = [p.grad.detach().float().norm() for p in module.parameters() if p.grad is not None]
            if grads:
                norms[name] = norm = float(torch.stack(grads).norm())
                self._sums[name] = self._sums.get(name, 0.0) + norm
                self._max[name] = max(self._max.get(name, 0.0), norm)
        self._steps += 1
        self._step += 1
        if self._step <= self.trace_steps:
            traced = {f"diag_step/grad_norm/{k}": v for k, v in norms.items()}
            activations = self._activations(self.inputs)
            traced.update({tag.replace("diag/", "diag_step/", 1): v for tag, v in activations.items()})
            if self._trace is None:
                from torch.utils.tensorboard import SummaryWriter
                self._trace = SummaryWriter(os.path.join(self.writer.log_dir, TRACE_FOLDER))
            for tag, value in traced.items():
                self._trace.add_scalar(tag, value, self._step)
            if self._step == self.trace_steps:
                self._trace.close()

    def end_epoch(self, epoch):
        """Log the epoch's gradient norms, and the dead units and attention entropy on the fixed batch."""
        if not self.enabled:
            return {}
        scalars = {f"diag/grad_norm/{k}": v / max(self._steps, 1) for k, v in self._sums.items()}
        scalars.update({f"diag/grad_norm_max/{k}": v for k, v in self._max.items()})
        self._sums, self._max, self._steps = {}, {}, 0
        scalars.update(self._activations(self.inputs))
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, epoch)
        if self._trace is not None:
            self._trace.flush()
        return scalars

    @torch.no_grad()
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
