"""What a finished classification run leaves behind: metrics, figures, predictions, TensorBoard.

Every train script calls `finish_run` once, after the best weights are
restored; it is the only place that touches the test split's labels.
"""
import csv
import os

import torch
import torch.nn.functional as F

from . import plots
from .data import REGIMES
from .io import atomic_path, save_drawn_figure, save_json
from .training import evaluate


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


def write_predictions(path, index, logits, split):
    """predictions_test.csv: id,digit (+ label when known); id is the row in the test split."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "digit"] + (["label"] if split.labeled else []))
        for i, p in zip(index.tolist(), logits.argmax(1).tolist()):
            w.writerow([i, p] + ([int(split.label[i])] if split.labeled else []))


def _five(index, seed):
    g = torch.Generator().manual_seed(seed)
    return index[torch.randperm(len(index), generator=g)[:5]]


def finish_run(*, run_dir, model, dataset, train_split, train_index, val_metrics, test_index, views,
               batch_size, device, history, early, params, train_seconds, writer, config, title):
    """Evaluate on test, write metrics.json, figures, predictions and TensorBoard extras."""
    test = dataset.test
    test_eval = evaluate(model, test, test_index, views, batch_size, device, config["precision"])
    test_metrics = classification_metrics(test_eval["logits"], test, test_index)
    write_predictions(os.path.join(run_dir, "predictions_test.csv"), test_index, test_eval["logits"], test)

    epochs_run = len(history)
    seen = sum(h["train_samples"] for h in history)
    metrics = {
        "model": config["model"], "fusion": config.get("fusion"),
        "dataset": dataset.name, "synthetic": dataset.is_synthetic, "fingerprint": dataset.fingerprint,
        "seed": config["args"]["seed"], "data_seed": config["args"]["data_seed"],
        "limit": config["args"].get("limit"),
        "best_epoch": early.best_epoch, "epochs_run": epochs_run,
        "stopped_early": early.should_stop,
        "val": val_metrics,
        "test": test_metrics,
        "params": params,
        "train_seconds": train_seconds,
        "seconds_per_epoch": train_seconds / max(epochs_run, 1),
        "samples_per_second": seen / train_seconds if train_seconds > 0 else None,
    }
    figures = {"curves": plots.training_curves(history, f"{title}: training curves")}
    if test_metrics["labeled"]:
        figures["confusion_test"] = plots.confusion_matrix_figure(
            test_metrics["confusion"], f"{title}: test confusion (acc {100 * test_metrics['acc']:.1f}%)")
    for name, split, index in (("samples_train", train_split, train_index), ("samples_test", test, test_index)):
        pick = _five(index, seed=config["args"]["seed"])
        logits = evaluate(model, split, pick, views, batch_size, device, config["precision"])["logits"]
        which = "training" if name == "samples_train" else "test"
        figures[name] = plots.samples_with_logits(split, pick.tolist(), logits.numpy(), views,
                                                  f"{title}: five random {which} samples with logits")
    for name, fig in figures.items():
        writer.add_figure(f"figures/{name}", fig, global_step=epochs_run, close=False)  # draws the canvas
        save_drawn_figure(fig, os.path.join(run_dir, "figures", f"{name}.png"))

    if "audio" in views:  # let a person listen to a few test inputs as the model heard them
        for k, i in enumerate(_five(test_index, seed=config["args"]["seed"] + 1).tolist()[:3]):
            x = test.audio[i, 0]
            writer.add_audio(f"audio/test_{k}_id{i}", (x / (x.abs().max() + 1e-8)).unsqueeze(0),
                             global_step=epochs_run, sample_rate=8000)

    hparams = {k: v for k, v in config["args"].items() if isinstance(v, (int, float, str, bool))}
    hparams["dataset"] = dataset.name
    final = {"hparam/val_loss": val_metrics["loss"], "hparam/val_acc": val_metrics["acc"]}
    if test_metrics["labeled"]:
        final.update({"hparam/test_loss": test_metrics["loss"], "hparam/test_acc": test_metrics["acc"]})
    writer.add_hparams(hparams, final, run_name="hparams")  # fixed name: one hparams entry per run
    writer.flush()
    # Written last: a metrics.json means the run finished (reproduce.sh skips such runs).
    save_json(metrics, os.path.join(run_dir, "metrics.json"))
    return metrics


def log_text_summary(metrics):
    t = metrics["test"]
    test = f"test loss {t['loss']:.4f}, acc {100 * t['acc']:.2f}%" if t["labeled"] else "test split unlabelled"
    return (f"[{metrics['dataset']}] best epoch {metrics['best_epoch']} of {metrics['epochs_run']}: "
            f"val loss {metrics['val']['loss']:.4f}, acc {100 * metrics['val']['acc']:.2f}%; {test}; "
            f"{metrics['seconds_per_epoch']:.1f} s/epoch")

