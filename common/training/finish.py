"""What a finished classification run leaves behind: metrics, figures, predictions, TensorBoard.

Every train script calls `finish_run` once, after the best weights are
restored; it is the only place that touches the test split's labels.
"""
import csv

import torch

from ..figures import confusion_matrix_figure, samples_with_logits, similarity_figure, training_curves
from ..io import atomic_path, save_drawn_figure, save_json
from .loop import classification_metrics, evaluate


def write_predictions(path, index, logits, split):
    """predictions_test.csv: id,digit (+ label when known, + the pair's recording, digit_speaker_take,
    when the source names its recordings); id is the row in the test split. The recording lets a
    reader resample recordings rather than pairs (each recording makes many test pairs)."""
    names = split.recording_names if split.recording_names and "recording_index" in split.meta else None
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "digit"] + (["label"] if split.labeled else []) + (["recording"] if names else []))
        for i, p in zip(index.tolist(), logits.argmax(1).tolist()):
            w.writerow([i, p] + ([int(split.label[i])] if split.labeled else [])
                       + ([names[int(split.meta["recording_index"][i])]] if names else []))


def _five(index, seed):
    g = torch.Generator().manual_seed(seed)
    return index[torch.randperm(len(index), generator=g)[:5]]


def run_numbers(run, params):
    """The bookkeeping numbers every finished run reports, from its Progress."""
    history, early = run.history, run.early
    epochs_run = len(history)
    seen = sum(h["train_samples"] for h in history)
    args = run.config["args"]
    return {
        "dataset": run.setup.dataset.name, "synthetic": run.setup.dataset.is_synthetic,
        "fingerprint": run.setup.dataset.fingerprint,
        "seed": args["seed"], "data_seed": args["data_seed"], "limit": args.get("limit"),
        "best_epoch": early.best_epoch, "epochs_run": epochs_run, "stopped_early": early.should_stop,
        "params": params,
        "train_seconds": run.train_seconds,
        "seconds_per_epoch": run.train_seconds / max(epochs_run, 1),
        "samples_per_second": seen / run.train_seconds if run.train_seconds > 0 else None,
    }


def log_hparams(run, final):
    hparams = {k: v for k, v in run.config["args"].items() if isinstance(v, (int, float, str, bool))}
    hparams["dataset"] = run.setup.dataset.name
    run.writer.add_hparams(hparams, final, run_name="hparams")  # fixed name: one hparams entry per run
    run.writer.flush()


def save_figures(run, figures):
    """Each figure to TensorBoard and to figures/NAME.png, rendered once."""
    for name, fig in figures.items():
        run.writer.add_figure(f"figures/{name}", fig, global_step=len(run.history), close=False)  # draws it
        save_drawn_figure(fig, run.folder.figure(name))


def finish_run(run, dataset, train_index, test_index, views, batch_size, best, title):
    """Evaluate the restored best model on test; write metrics.json, figures, predictions, TensorBoard extras.

    run: the Progress of the finished loop; best: the history row of the best epoch.
    """
    model, device, precision, config = run.model, run.setup.device, run.setup.precision, run.config
    test = dataset.test
    test_eval = evaluate(model, test, test_index, views, batch_size, device, precision)
    test_metrics = classification_metrics(test_eval["logits"], test, test_index)
    write_predictions(run.folder.predictions, test_index, test_eval["logits"], test)

    val_metrics = {"loss": best["val_loss"], "acc": best["val_acc"]}
    metrics = {"model": config["model"], "fusion": config.get("fusion"),
               **run_numbers(run, config["params"]), "val": val_metrics, "test": test_metrics,
               **({"calibration": best["calibration"]} if "calibration" in best else {})}
    metrics = {k: metrics[k] for k in METRICS_ORDER if k in metrics}
    figures = {"curves": training_curves(run.history, f"{title}: training curves", best["epoch"])}
    if test_metrics["labeled"]:
        figures["confusion_test"] = confusion_matrix_figure(
            test_metrics["confusion"], f"{title}: test confusion (acc {100 * test_metrics['acc']:.1f}%)")
    for name, split, index in (("samples_train", dataset.train, train_index), ("samples_test", test, test_index)):
        pick = _five(index, seed=config["args"]["seed"])
        logits = evaluate(model, split, pick, views, batch_size, device, precision)["logits"]
        which = "training" if name == "samples_train" else "test"
        figures[name] = samples_with_logits(split, pick.tolist(), logits.numpy(), views,
                                                  f"{title}: five random {which} samples with logits")
    save_figures(run, figures)

    if "audio" in views:  # let a person listen to a few test inputs as the model heard them
        for k, i in enumerate(_five(test_index, seed=config["args"]["seed"] + 1).tolist()[:3]):
            x = test.audio[i, 0]
            run.writer.add_audio(f"audio/test_{k}_id{i}", (x / (x.abs().max() + 1e-8)).unsqueeze(0),
                                 global_step=len(run.history), sample_rate=8000)

    final = {"hparam/val_loss": val_metrics["loss"], "hparam/val_acc": val_metrics["acc"]}
    if test_metrics["labeled"]:
        final.update({"hparam/test_loss": test_metrics["loss"], "hparam/test_acc": test_metrics["acc"]})
    log_hparams(run, final)
    run.writer.close()
    # Written last: a metrics.json means the run finished (reproduce.sh skips such runs).
    save_json(metrics, run.folder.metrics)
    return metrics


# metrics.json's key order, as it has always been written
METRICS_ORDER = ("model", "fusion", "dataset", "synthetic", "fingerprint", "seed", "data_seed", "limit",
                 "best_epoch", "epochs_run", "stopped_early", "val", "test", "params", "train_seconds",
                 "seconds_per_epoch", "samples_per_second", "calibration")


def log_text_summary(metrics):
    t = metrics["test"]
    test = f"test loss {t['loss']:.4f}, acc {100 * t['acc']:.2f}%" if t["labeled"] else "test split unlabelled"
    return (f"[{metrics['dataset']}] best epoch {metrics['best_epoch']} of {metrics['epochs_run']}: "
            f"val loss {metrics['val']['loss']:.4f}, acc {100 * metrics['val']['acc']:.2f}%; {test}; "
            f"{metrics['seconds_per_epoch']:.1f} s/epoch")


def finish_contrastive_run(run, dataset, train_index, val_index, test_index, best, title):
    """What a contrastive run reports once its best weights are back: test retrieval (exact partner
    and same digit), linear-probe accuracy of the frozen featurizers, figures, metrics.json."""
    from .retrieval import encode, probe_accuracies, retrieval_metrics
    model, device, precision, args = run.model, run.setup.device, run.setup.precision, run.args
    train, test = dataset.train, dataset.test
    test_codes = encode(model, test, test_index, device, precision)
    test_labels = test.label[test_index] if test.labeled else None
    retrieval = retrieval_metrics(test_codes["emb_image"], test_codes["emb_audio"], test_labels, args.similarity)

    train_codes = encode(model, train, train_index, device, precision)
    eval_sets = {"val": (encode(model, train, val_index, device, precision), train.label[val_index])}
    if test_labels is not None:
        eval_sets["test"] = (test_codes, test_labels)
    probes = probe_accuracies(train_codes, train.label[train_index], eval_sets, args.probe_steps)

    metrics = {"model": run.config["model"], "loss": args.loss, "similarity": args.similarity,
               "tau": model.loss.tau, "learn_tau": args.learn_tau, "bias": model.bias, "learn_bias": args.learn_bias,
               **run_numbers(run, run.config["params"]),
               "val": {"loss": best["val_loss"], "probe": probes["val"]},
               "test": {"labeled": test_labels is not None, "retrieval": retrieval, "probe": probes.get("test")}}
    metrics = {k: metrics[k] for k in CONTRASTIVE_METRICS_ORDER}

    figures = {"curves": training_curves(run.history, f"{title}: training curves", best["epoch"],
                                               loss_label=f"{args.loss} loss")}
    first = slice(0, min(SIMILARITY_FIGURE_PAIRS, len(test_index)))
    if len(test_index):
        figures["similarity_test"] = similarity_figure(
            test_codes["emb_image"][first], test_codes["emb_audio"][first],
            None if test_labels is None else test_labels[first], args.similarity,
            f"{title}: image-audio similarity, first {first.stop} test pairs"
            + (" sorted by digit" if test_labels is not None else ""))
    save_figures(run, figures)

    final = {"hparam/val_loss": best["val_loss"], "hparam/tau": metrics["tau"],
             "hparam/test_recall1_img2aud": retrieval["recall@1_img2aud"],
             "hparam/test_recall1_aud2img": retrieval["recall@1_aud2img"]}
    if metrics["test"]["probe"] is not None:
        final.update({f"hparam/test_probe_{k}": v for k, v in metrics["test"]["probe"].items()})
    log_hparams(run, final)
    run.writer.close()
    save_json(metrics, run.folder.metrics)  # last: its presence means the run finished
    return metrics


SIMILARITY_FIGURE_PAIRS = 64
CONTRASTIVE_METRICS_ORDER = ("model", "loss", "similarity", "tau", "learn_tau", "bias", "learn_bias") + \
    METRICS_ORDER[2:8] + ("best_epoch", "epochs_run", "stopped_early", "val", "test", "params", "train_seconds",
                          "seconds_per_epoch", "samples_per_second")


def contrastive_summary(m):
    r = m["test"]["retrieval"]
    text = (f"[{m['dataset']}] contrastive {m['loss']}: best epoch {m['best_epoch']} of {m['epochs_run']}, "
            f"val loss {m['val']['loss']:.4f}, tau {m['tau']:.4g}; test retrieval R@1 img->aud "
            f"{100 * r['recall@1_img2aud']:.2f}%, aud->img {100 * r['recall@1_aud2img']:.2f}% "
            f"(chance {100 / max(r['n'], 1):.2f}%"
            + (f", digit-only ceiling {100 * r['recall@1_ceiling']:.2f}%)" if "recall@1_ceiling" in r else ")"))
    if "digit@1_img2aud" in r:
        text += (f"; same digit at top-1 {100 * r['digit@1_img2aud']:.2f}% / {100 * r['digit@1_aud2img']:.2f}%, "
                 f"in the top 5 {100 * r['digit@5_img2aud']:.2f}% / {100 * r['digit@5_aud2img']:.2f}%")
    probe = m["test"]["probe"]
    if probe is not None:
        text += (f"; probe acc image {100 * probe['image']:.2f}%, audio {100 * probe['audio']:.2f}%, "
                 f"both {100 * probe['both']:.2f}%")
    else:
        text += "; test split unlabelled (no probe accuracy)"
    return text + f"; {m['seconds_per_epoch']:.1f} s/epoch"
