"""Label efficiency measured as the field does it: frozen features, a linear probe, a few labels.

One protocol for every source of features, so that a pre-trained featurizer is read against its
floors:

- the labelled training pairs: a class-balanced share F of the training indices (F = 0.01, 0.1,
  1), drawn with label seed k (common.data.batching.class_balanced_subset);
- model selection on a labelled validation subset no larger than that budget: per digit, as many
  validation pairs as the training share holds of that digit (the whole validation split once the
  budget exceeds it), drawn with the same seed. It picks the probe's L2 penalty from
  WEIGHT_DECAYS; nothing else is tuned;
- the probe: multinomial logistic regression on standardised features (fit_linear_probe: L-BFGS
  from zeros, deterministic), one per feature set (image, audio, both concatenated);
- the score: accuracy on the whole test split, overall and per noise regime.

The floors (`floor_features`): the raw noisy pixels (784 values), a fixed audio feature (the
log-mel map of common/nets/mel.py averaged over time, with its standard deviation over time: 128
values, blind to where the word sits in its second), and both concatenated. The random-init
floor: the exam's two featurizers as built at seed k, never trained.

Fine-tuning (`finetune_rows`) is linear-probe-then-fine-tune: the probe on both frozen featurizers
starts a short fine-tuning of everything, with a small learning rate for the featurizers, selected
on the same budget validation subset; a random initialisation gets the same budget and selection,
which makes it the tuned from-scratch baseline.
"""
import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..training.retrieval import fit_linear_probe
from ..data import REGIMES
from ..data.batching import class_balanced_subset, epoch_order
from ..nets.mel import LogMel
from ..nets.layers import Dropout
from ..training.loop import autocast, evaluate

FRACTIONS = (0.01, 0.1, 1.0)
LABEL_SEEDS = (0, 1, 2)
FEATURE_SETS = ("image", "audio", "both")
WEIGHT_DECAYS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
PROBE_STEPS = 100


def budget_subsets(train_idx, val_idx, labels, fraction, seed):
    """The labelled training share and the validation subset that may select on it: for each digit,
    as many validation pairs as the training share holds of that digit (all of them when the
    validation split has fewer), drawn by a permutation seeded with `seed`. So the validation
    subset is never larger than the label budget, and has the budget's class balance."""
    train = class_balanced_subset(train_idx, labels, fraction, seed)
    g = torch.Generator().manual_seed(seed)
    shuffled = val_idx[torch.randperm(len(val_idx), generator=g)]
    wanted = torch.bincount(labels[train], minlength=10)
    keep = [shuffled[labels[shuffled] == c][:int(wanted[c])] for c in range(len(wanted))]
    return train, torch.cat(keep).sort().values


@torch.no_grad()
def floor_features(split, batch_size=1024):
    """The trivial baselines' features of every pair of a split: {"image": [N, 784] noisy pixels,
    "audio": [N, 128] log-mel mean and std over time}."""
    logmel = LogMel()
    audio = []
    for lo in range(0, len(split), batch_size):
        maps = logmel(split.audio[lo:lo + batch_size]).squeeze(1)  # [B, 64, 101]
        audio.append(torch.cat([maps.mean(-1), maps.std(-1)], dim=1))
    return {"image": split.image.flatten(1).float(), "audio": torch.cat(audio)}


def pick(features, which):
    if which == "both":
        return torch.cat([features["image"], features["audio"]], dim=1)
    return features[which]


def regimes_of(split, index):
    """The noise regime of each pair at `index`, or None for data without regimes (the course files)."""
    return split.meta["regime"][index] if "regime" in split.meta else None


def accuracy_by_regime(pred, labels, regimes):
    """Accuracy over all pairs and per noise regime (only "all" when regimes is None)."""
    correct = (pred == labels).float()
    out = {"all": correct.mean().item()}
    if regimes is not None:
        out.update({name: correct[regimes == r].mean().item() if (regimes == r).any() else None
                    for r, name in enumerate(REGIMES)})
    return out


def selected_probe(x_train, y_train, x_val, y_val, steps=PROBE_STEPS, weight_decays=WEIGHT_DECAYS):
    """The probe whose L2 penalty from `weight_decays` scores best on the validation subset (the first of
    equal scores: the grid runs from weak to strong). Returns (penalty, validation accuracy, predict)."""
    best = None
    for wd in weight_decays:
        predict = fit_linear_probe(x_train, y_train, steps, weight_decay=wd)
        val_acc = (predict(x_val).argmax(1) == y_val).float().mean().item()
        if best is None or val_acc > best[1]:
            best = (wd, val_acc, predict)
    return best


def probe_rows(train_features, train_labels, train_idx, val_idx, test_features, test_labels, test_regimes,
               fractions=FRACTIONS, seeds=LABEL_SEEDS, weight_decays=WEIGHT_DECAYS, steps=PROBE_STEPS):
    """One row per (fraction, label seed, feature set): the budget, the chosen L2 penalty, its
    budget-validation accuracy and the test accuracy (overall and per regime).

    train_features: {"image", "audio"} tensors over the whole training split (row = dataset index);
    train_idx / val_idx: the run's own training and validation indices."""
    rows = []
    for fraction in fractions:
        for seed in seeds:
            train, val = budget_subsets(train_idx, val_idx, train_labels, fraction, seed)
            for which in FEATURE_SETS:
                x_train, x_val = pick(train_features, which)[train], pick(train_features, which)[val]
                wd, val_acc, predict = selected_probe(x_train, train_labels[train], x_val, train_labels[val], steps,
                                                      weight_decays)
                test = accuracy_by_regime(predict(pick(test_features, which)).argmax(1), test_labels, test_regimes)
                rows.append({"fraction": fraction, "label_seed": seed, "features": which, "n_train": len(train),
                             "n_val": len(val), "weight_decay": wd, "val_acc": val_acc, "test_acc": test["all"],
                             "test_acc_by_regime": {k: v for k, v in test.items() if k != "all"}})
    return rows


# ---------------------------------------------------------------- linear probe, then fine-tuning

FINETUNE_FRACTIONS = (0.01, 0.1)
FINETUNE_LRS = (1e-4, 1e-3)  # the featurizers' learning rate, chosen on the budget validation subset
FINETUNE_STEPS = 200
FINETUNE_BATCH = 64
FINETUNE_DROPOUT = 0.1
EVAL_EVERY = 50


class ProbedClassifier(nn.Module):
    """Both featurizers, the probe's standardisation and its linear layer: the classifier that
    linear-probe-then-fine-tune starts from (its logits equal the probe's at step 0)."""

    def __init__(self, image_featurizer, audio_featurizer, probe):
        super().__init__()
        self.image_featurizer, self.audio_featurizer = image_featurizer, audio_featurizer
        self.register_buffer("mean", probe.mean.clone())
        self.register_buffer("std", probe.std.clone())
        self.linear = copy.deepcopy(probe.linear)

    def forward(self, image, audio):
        features = torch.cat([self.image_featurizer(image), self.audio_featurizer(audio)], dim=1)
        return self.linear((features.float() - self.mean) / self.std)


def _accuracy(model, split, index, device, precision):
    return evaluate(model, split, index, ("image", "audio"), 512, device, precision)


def finetune_rows(featurizers, train_split, train_idx, val_idx, test_split, test_idx, device, precision,
                  fractions=FINETUNE_FRACTIONS, seeds=LABEL_SEEDS, lrs=FINETUNE_LRS, steps=FINETUNE_STEPS,
                  probe_steps=PROBE_STEPS):
    """Linear probe, then fine-tune: one row per (fraction, label seed).

    featurizers(seed) -> (image_featurizer, audio_featurizer), fresh copies (pre-trained weights,
    or a random initialisation at that seed). For each share F and label seed: the probe on both
    frozen featurizers (its L2 penalty chosen on the budget validation subset, as in probe_rows),
    then `steps` AdamW steps of batch 64 on the labelled share (featurizer dropout 0.1), the
    featurizers at each lr of `lrs` and the head at 1e-3; the budget validation subset scores the
    start and every EVAL_EVERY steps and picks both the lr and the step. Test accuracy of the pick."""
    rows = []
    labels = train_split.label
    test_regimes = regimes_of(test_split, test_idx)
    for fraction in fractions:
        for seed in seeds:
            train, val = budget_subsets(train_idx, val_idx, labels, fraction, seed)
            best = None  # (val acc, -lr, -step): the first of equal scores wins
            for lr in lrs:
                image_f, audio_f = featurizers(seed)
                model = _probed(image_f, audio_f, train_split, train, val, labels, device, precision, probe_steps)
                for module in model.modules():
                    if isinstance(module, Dropout):
                        module.p = FINETUNE_DROPOUT
                optimizer = torch.optim.AdamW([
                    {"params": [*model.image_featurizer.parameters(), *model.audio_featurizer.parameters()],
                     "lr": lr}, {"params": model.linear.parameters(), "lr": 1e-3}], weight_decay=1e-4)
                order = epoch_order(train, torch.Generator().manual_seed(seed), steps * FINETUNE_BATCH)
                torch.manual_seed(seed)  # dropout's draws
                for step in range(steps + 1):
                    if step % EVAL_EVERY == 0:
                        acc = _accuracy(model, train_split, val, device, precision)["acc"]
                        if best is None or acc > best[0]:
                            test = _accuracy(model, test_split, test_idx, device, precision)
                            best = (acc, lr, step, test)
                    if step == steps:
                        break
                    model.train()
                    index = order[step * FINETUNE_BATCH:(step + 1) * FINETUNE_BATCH]
                    image, audio = train_split.image[index].to(device), train_split.audio[index].to(device)
                    with autocast(precision, device):
                        logits = model(image, audio)
                    loss = F.cross_entropy(logits.float(), labels[index].to(device))
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
            val_acc, lr, step, test = best
            by_regime = accuracy_by_regime(test["logits"].argmax(1), test_split.label[test_idx], test_regimes)
            rows.append({"fraction": fraction, "label_seed": seed, "features": "both", "method": "lp-ft",
                         "n_train": len(train), "n_val": len(val), "lr": lr, "step": step, "val_acc": val_acc,
                         "test_acc": by_regime["all"],
                         "test_acc_by_regime": {k: v for k, v in by_regime.items() if k != "all"}})
    return rows


def _probed(image_f, audio_f, split, train, val, labels, device, precision, probe_steps):
    """The probe on both frozen featurizers, its L2 penalty chosen on `val`, as a ProbedClassifier."""
    holder = nn.Module()
    holder.image_featurizer, holder.audio_featurizer = image_f, audio_f
    holder = holder.to(device).eval()
    with torch.inference_mode():
        feats = {}
        for name, index in (("train", train), ("val", val)):
            parts = []
            for idx in index.split(512):
                with autocast(precision, device):
                    parts.append(torch.cat([image_f(split.image[idx].to(device)),
                                            audio_f(split.audio[idx].to(device))], 1).float().cpu())
            feats[name] = torch.cat(parts)
    _, _, predict = selected_probe(feats["train"], labels[train], feats["val"], labels[val], probe_steps)
    return ProbedClassifier(image_f, audio_f, predict).to(device)
