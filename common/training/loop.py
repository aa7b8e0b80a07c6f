"""Helpers every training loop shares: precision (bf16 autocast), Adam, early stopping,
checkpoints with RNG state, evaluation, graceful stop on signals, the non-finite-loss guard.

The loops themselves stay in the train_*.py scripts, where they can be read
top to bottom; this module holds only the pieces they would otherwise copy.
"""
import math
import os
import random
import shutil
import signal

import numpy as np
import torch
import torch.nn.functional as F

from ..facts import REGIMES, SCHEDULES
from ..io import save_torch

CHECKPOINT_FORMAT = 1


class TrainingError(Exception):
    """A run cannot go on (non-finite loss, unusable checkpoint); printed as one line."""


def set_seed(seed):
    """Seed every generator a run may touch; the data order uses its own generator."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(name):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda asked for, but no CUDA device is available")
    return torch.device(name)


def request_determinism(device):
    """On a GPU, ask for deterministic kernels: torch.use_deterministic_algorithms (an op without a
    deterministic kernel warns, naming itself, instead of stopping the run) and the cuBLAS workspace
    setting it needs, before the first CUDA call. The CPU kernels used here repeat already (fp32 runs
    repeat bit for bit). Returns what config.json records."""
    if device.type != "cuda":
        return {"deterministic_algorithms": torch.are_deterministic_algorithms_enabled()}
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    return {"deterministic_algorithms": True, "cublas_workspace_config": os.environ["CUBLAS_WORKSPACE_CONFIG"]}




def cpu_has_native_bf16():
    """True on x86 CPUs with AVX512-BF16 or AMX: bf16 matmuls there run several times faster than fp32."""
    cpu = torch.cpu
    return any(getattr(cpu, probe, lambda: False)() for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def resolve_precision(name, device):
    """--precision as used: 'auto' is bf16 where the hardware computes bf16 natively, else fp32."""
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"


def autocast(precision, device):
    """The forward pass's precision: bf16 autocast (matmuls and convolutions in bf16, weights and
    optimizer state stay fp32) or nothing. Losses and metrics are taken in fp32 outside it."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def make_adam(params, lr):
    """Adam with the fused kernel where this torch has it for the parameters' device (one pass
    over all parameters instead of a handful of foreach ops); the update rule is torch's Adam."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError):  # no fused kernel for this device or torch
        return torch.optim.Adam(params, lr=lr)




def parameter_groups(model, lr, weight_decay, own_lr=None, own_names=()):
    """AdamW's parameter groups: weight matrices and kernels (2 or more dimensions) decay; biases,
    norm scales and the parameters named in `own_names` (e.g. a learned temperature and bias) do
    not, and the named ones get their own learning rate `own_lr` (None: `lr`). Empty groups are
    left out; the order of the parameters is the model's."""
    decay, no_decay, own = [], [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name in own_names:
            own.append(param)
        elif param.ndim >= 2:
            decay.append(param)
        else:
            no_decay.append(param)
    groups = [{"params": decay, "weight_decay": weight_decay, "name": "decay"},
              {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
              {"params": own, "weight_decay": 0.0, "lr": lr if own_lr is None else own_lr, "name": "own_lr"}]
    return [g for g in groups if g["params"]]


def make_optimizer(model, args, own_names=(), own_lr=None):
    """The optimizer of --optimizer, --lr and --weight-decay.

    adam (the default) is the exam's: torch's Adam over model.parameters() with one learning rate,
    built by make_adam exactly as before these flags existed. adamw decays weight matrices only
    (see parameter_groups) and gives `own_names` (a learned temperature and bias) their own lr."""
    if args.optimizer == "adam":
        return make_adam(model.parameters(), args.lr)
    groups = parameter_groups(model, args.lr, args.weight_decay, own_lr, own_names)
    try:
        return torch.optim.AdamW(groups, lr=args.lr, fused=True)
    except (RuntimeError, TypeError):  # no fused kernel for this device or torch
        return torch.optim.AdamW(groups, lr=args.lr)


def lr_factor(step, warmup_steps, total_steps, schedule):
    """The share of the base learning rate at optimizer step `step` (0-based).

    Linear warm-up: (step + 1) / warmup_steps for the first warmup_steps steps, so the first step
    is already above zero. Then constant (1), or cosine from 1 down to 0 at total_steps."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    span = max(total_steps - warmup_steps, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(step - warmup_steps, span) / span))


class LRSchedule:
    """Sets each parameter group's learning rate before every optimizer step (--warmup-epochs,
    --schedule). The step count is read from the optimizer's own state, and the base rate and the
    schedule's length are kept in its parameter groups, so a resumed run, whose optimizer comes
    from last.pt, continues the schedule it started exactly (a larger --max-epochs on resume does
    not stretch it). The default (no warm-up, constant) never touches the learning rate."""

    def __init__(self, optimizer, warmup_steps, total_steps, schedule):
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")
        self.optimizer, self.schedule = optimizer, schedule
        self.active = int(warmup_steps) > 0 or schedule != "constant"
        self.warmup_steps, self.total_steps = int(warmup_steps), int(total_steps)
        if not self.active:  # the default: the optimizer is left exactly as it was
            return
        first = optimizer.param_groups[0]
        self.warmup_steps = int(first.setdefault("warmup_steps", self.warmup_steps))  # a resumed run's own
        self.total_steps = int(first.setdefault("total_steps", self.total_steps))
        for group in optimizer.param_groups:
            group.setdefault("base_lr", group["lr"])  # a resumed optimizer brings its own from last.pt

    def steps_done(self):
        for group in self.optimizer.param_groups:
            for param in group["params"]:
                state = self.optimizer.state.get(param)
                if state and "step" in state:
                    return int(state["step"])
        return 0

    def step(self):
        """Set the learning rate of the step about to be taken; returns the factor used."""
        if not self.active:
            return 1.0
        factor = lr_factor(self.steps_done(), self.warmup_steps, self.total_steps, self.schedule)
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        return factor


def make_schedule(optimizer, args, steps_per_epoch):
    """LRSchedule of --warmup-epochs and --schedule; cosine runs over --max-epochs."""
    return LRSchedule(optimizer, round(args.warmup_epochs * steps_per_epoch), args.max_epochs * steps_per_epoch,
                      args.schedule)


def clip_gradients(model, max_norm):
    """--clip-grad: scale all gradients down to a global norm of at most max_norm (0: off, and free).
    Returns the norm before clipping, or None when off."""
    if not max_norm:
        return None
    return float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))


def batch_inputs(split, index, views, device):
    """The model inputs of the samples at `index`: one tensor per view, on `device`."""
    return [getattr(split, view)[index].to(device, non_blocking=True) for view in views]




def selection_score(val, select):
    """The number EarlyStopping minimises, from the validation numbers `val` and a script's --select
    val_NAME: val["loss"] itself (the exam's rule), or minus a score that rises (val_acc, val_digit1)."""
    name = select.removeprefix("val_")
    return val[name] if name == "loss" else -val[name]


class EarlyStopping:
    """Stop after `patience` epochs without a strictly lower score: the validation loss, or what
    --select watches, made a number to minimise (minus an accuracy)."""

    def __init__(self, patience):
        self.patience = patience
        self.best = math.inf
        self.best_epoch = 0
        self.bad_epochs = 0

    def step(self, value, epoch):
        """Record one epoch's value; True when it is a strict improvement (save best.pt)."""
        if value < self.best:  # NaN compares False: never an improvement
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self):
        return self.bad_epochs >= self.patience

    def state_dict(self):
        return {"patience": self.patience, "best": self.best, "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state):
        self.best, self.best_epoch, self.bad_epochs = state["best"], state["best_epoch"], state["bad_epochs"]


def check_finite(loss, epoch, batch):
    if not torch.isfinite(loss).all():
        raise TrainingError(f"non-finite training loss ({loss.item()}) at epoch {epoch}, batch {batch}; "
                            "the run stops here (try a lower --lr); best.pt is untouched")


def rng_state(shuffle_generator):
    """Every generator's state as tensors and plain types (weights_only-safe)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "shuffle": shuffle_generator.get_state(),
             "python": random.getstate(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached": float(cached)}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state, shuffle_generator):
    torch.set_rng_state(state["torch"])
    shuffle_generator.set_state(state["shuffle"])
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path, **fields):
    """Atomically save a dict of tensors and plain types (loadable with weights_only=True).

    A failed write (a full disk: torch reports it as "unexpected pos ...") leaves the previous
    checkpoint as it was, since the new one goes to a temp file first, and ends the run in one line
    that says what the folder can still do."""
    try:
        save_torch({"format": CHECKPOINT_FORMAT, **fields}, path)
    except (OSError, RuntimeError) as e:
        free = shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free
        reason = "no space left on the device" if free < 64 << 20 else (str(e).splitlines() or [""])[0]
        last = os.path.join(os.path.dirname(os.path.abspath(path)), "last.pt")  # written first at each epoch's end
        kept = "the previous one is intact: --resume continues from it" if os.path.exists(path) else \
            "--resume continues from last.pt" if os.path.exists(last) else \
            "the run has no checkpoint yet: starting it again (same command) replaces the folder"
        raise TrainingError(f"cannot write {path}: {reason} ({free >> 20} MiB free); {kept}") from None


def load_checkpoint(path):
    """Load a checkpoint safely: weights_only=True refuses anything but tensors and plain types."""
    if not os.path.exists(path):
        raise TrainingError(f"no checkpoint at {path}")
    if os.path.isdir(path):
        raise TrainingError(f"{path} is a folder, not a checkpoint file")
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:4] != b"PK\x03\x04" and head[:1] != b"\x80":  # torch.save's zip format, or a bare pickle
        what = "an empty file" if not head else "neither the zip format torch.save writes nor a pickle"
        raise TrainingError(f"{path} is not a PyTorch checkpoint: {what}")
    try:
        ckpt = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # corrupt file, foreign pickle, ...
        if "weights_only" in str(e):  # torch's message goes on to suggest the unsafe load: not ours to repeat
            raise TrainingError(f"refused checkpoint {path}: it holds objects other than tensors and plain types, "
                                "and loading those could run code; this project never loads such a file") from None
        reason = (str(e).splitlines() or [""])[0]
        raise TrainingError(f"cannot load checkpoint {path}: {type(e).__name__}: {reason}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{path} is not a checkpoint of this project (format {CHECKPOINT_FORMAT})")
    return ckpt


@torch.inference_mode()
def evaluate(model, split, index, views, batch_size, device, precision="fp32"):
    """Mean cross-entropy, accuracy and logits over split[index] (loss/acc None if unlabelled).

    The forward pass runs at `precision`; the logits are turned to fp32 before the loss."""
    model.eval()
    logits = []
    for lo in range(0, len(index), batch_size):
        idx = index[lo:lo + batch_size]
        with autocast(precision, device):
            out = model(*batch_inputs(split, idx, views, device))
        logits.append(out.float().cpu())
    logits = torch.cat(logits) if logits else torch.empty(0, 10)
    if split.label is None:
        return {"loss": None, "acc": None, "logits": logits}
    labels = split.label[index]
    loss = F.cross_entropy(logits, labels, reduction="sum").item() / max(len(index), 1)
    acc = (logits.argmax(1) == labels).float().mean().item() if len(index) else float("nan")
    return {"loss": loss, "acc": acc, "logits": logits}


def confusion_matrix(pred, label, n=10):
    cm = torch.zeros(n, n, dtype=torch.long)
    cm.index_put_((label, pred), torch.ones_like(label), accumulate=True)
    return cm


def classification_metrics(logits, split, index):
    """Loss, accuracy, confusion, per-class and per-regime accuracy of logits on split[index]."""
    if split.label is None:
        return {"labeled": False, "n": len(index)}
    label = split.label[index]
    pred = logits.argmax(1)
    correct = (pred == label).float()
    cm = confusion_matrix(pred, label)
    out = {"labeled": True, "n": len(index),
           "loss": F.cross_entropy(logits, label).item(),
           "acc": correct.mean().item(),
           "confusion": cm.tolist(),
           "per_class_acc": [(cm[d, d] / cm[d].sum()).item() if cm[d].sum() else None for d in range(10)]}
    if "regime" in split.meta:
        regime = split.meta["regime"][index]
        out["per_regime_acc"] = {name: correct[regime == r].mean().item() if (regime == r).any() else None
                                 for r, name in enumerate(REGIMES)}
        out["per_regime_n"] = {name: int((regime == r).sum()) for r, name in enumerate(REGIMES)}
    return out


class GracefulStop:
    """Turn SIGINT / SIGTERM into a flag the loop checks after each batch.

    The handler only records the signal; the loop finishes its batch, saves
    last.pt and exits with 128 + the signal number (130 for Ctrl-C, 143 for TERM).
    """

    def __init__(self):
        self.signum = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:  # a second Ctrl-C: stop at once
            raise KeyboardInterrupt
        self.signum = signum

    @property
    def requested(self):
        return self.signum is not None

    @property
    def exit_code(self):
        return 128 + self.signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


def training_checkpoint(model, optimizer, early, shuffle_generator, *, epoch, history, train_seconds,
                        order=None, done_batches=0, loss_sum=0.0, n_seen=0, **extra):
    """Everything last.pt needs for an exact resume, also in the middle of an epoch.

    epoch: completed epochs; order/done_batches/loss_sum/n_seen: the epoch in
    progress (order None when the checkpoint falls between epochs).
    """
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "early_stopping": early.state_dict(), "rng": rng_state(shuffle_generator),
            "epoch": epoch, "history": history, "train_seconds": train_seconds,
            "order": order, "done_batches": done_batches, "loss_sum": loss_sum, "n_seen": n_seen, **extra}


def restore_training(ckpt, model, optimizer, early, shuffle_generator):
    """Load a last.pt into the live objects; return the progress fields of the loop."""
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    early.load_state_dict(ckpt["early_stopping"])
    restore_rng_state(ckpt["rng"], shuffle_generator)
    return {k: ckpt[k] for k in ("epoch", "history", "train_seconds", "order", "done_batches", "loss_sum", "n_seen")}
