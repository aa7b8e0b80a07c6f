"""Problem 2: contrastive pre-training of the two featurizers on image/audio pairs, without labels.

Image i and audio i of the training split form a positive pair; every other
pairing inside the batch is a negative. Each featurizer (Conv2Net's image
featurizer, Conv1Net's audio featurizer, 128-d outputs) gets a small projection
head fc(128->128)-ReLU-fc(128->proj_dim), and the two projections are trained
with the symmetric in-batch NT-Xent (CLIP) loss or the all-pairs NT-Log
(SigLIP) loss of common/contrastive.py. Labels are used only afterwards, to
measure what was learned: after the best weights (lowest validation
contrastive loss) are restored, the test split gives cross-modal retrieval
(recall@1 of the exact partner, share of top-1 hits with the same digit) and
the accuracy of linear probes (logistic regression on the frozen 128-d
featurizer outputs, fitted on the training indices).

Writes runs/NAME/ like the other train scripts; checkpoints/best.pt can seed a
multimodal run: python train_multimodal.py --init-from runs/NAME/checkpoints/best.pt
"""
import math
import os
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from common.cli import (UsageError, load_run_data, positive_float, positive_int, prepare_run_dir, resume_command, run_config,
                        run_main, training_parser)
from common.contrastive import SIMILARITIES, AllPairsNTLog, InBatchNTXent, retrieval_metrics, similarity_matrix
from common.data import batch_indices, shuffle_order
from common.io import save_drawn_figure, save_json
from common.models import FEATURE_DIM, AudioFeaturizer, ImageFeaturizer, count_parameters
from common.training import (EarlyStopping, GracefulStop, TrainingError, autocast, batch_inputs, check_finite,
                             load_checkpoint, make_adam, pick_device, prepare_splits, resolve_precision,
                             restore_training, save_checkpoint, set_seed, training_checkpoint)

MODEL = "contrastive"
VIEWS = ("image", "audio")
EVAL_BATCH = 512
DEFAULT_BATCH = 128  # more in-batch negatives than the classifiers' 64; the learned NT-Log bias assumes 128
PROBE_WEIGHT_DECAY = 1e-3
SIMILARITY_FIGURE_PAIRS = 64


class ContrastiveModel(nn.Module):
    """Both featurizers, their projection heads and the loss (with its tau / bias) in one module.

    forward(image, audio) returns the contrastive loss of the batch; `embed`
    gives the projections, `features` the 128-d featurizer outputs. Keeping
    the loss inside makes model.state_dict() hold a learnable temperature and
    bias too, so checkpoints resume exactly; the featurizers keep the
    `image_featurizer.` / `audio_featurizer.` key prefixes that
    `load_featurizer_weights` reads (it ignores the other keys).
    """

    def __init__(self, loss, proj_dim, dropout=0.5):
        super().__init__()
        self.image_featurizer = ImageFeaturizer(dropout)
        self.audio_featurizer = AudioFeaturizer(dropout)
        self.image_proj = nn.Sequential(nn.Linear(FEATURE_DIM, FEATURE_DIM), nn.ReLU(),
                                        nn.Linear(FEATURE_DIM, proj_dim))
        self.audio_proj = nn.Sequential(nn.Linear(FEATURE_DIM, FEATURE_DIM), nn.ReLU(),
                                        nn.Linear(FEATURE_DIM, proj_dim))
        self.loss = loss

    def features(self, image, audio):
        return self.image_featurizer(image), self.audio_featurizer(audio)

    def embed(self, image, audio):
        f_img, f_aud = self.features(image, audio)
        return self.image_proj(f_img), self.audio_proj(f_aud)

    def forward(self, image, audio):
        emb_image, emb_audio = self.embed(image, audio)
        with torch.autocast(emb_image.device.type, enabled=False):  # the loss in fp32 under any autocast
            return self.loss(emb_image.float(), emb_audio.float())


def build_loss(args):
    try:
        if args.loss == "nt_xent":
            return InBatchNTXent(args.similarity, args.tau, args.learn_tau)
        return AllPairsNTLog(args.similarity, args.tau, args.learn_tau, learn_bias=args.learn_bias)
    except ValueError as e:  # e.g. an initial tau outside the learnable range
        raise UsageError(str(e)) from None


def bias_of(loss):
    return float(loss.bias.detach()) if hasattr(loss, "bias") else None


@torch.inference_mode()
def contrastive_loss(model, split, index, batch_size, device, precision):
    """Mean contrastive loss over split[index] in eval mode, on the fixed batches index.split(batch_size).

    The same partition every epoch keeps the number comparable across epochs
    (the loss depends on which pairs share a batch); batches are weighted by size.
    """
    model.eval()
    total, n = 0.0, 0
    for idx in index.split(batch_size):
        with autocast(precision, device):
            loss = model(*batch_inputs(split, idx, VIEWS, device))
        total += loss.item() * len(idx)
        n += len(idx)
    return total / max(n, 1)


@torch.inference_mode()
def encode(model, split, index, device, precision):
    """Eval-mode featurizer outputs and projections of split[index], on the CPU."""
    model.eval()
    out = {"feat_image": [], "feat_audio": [], "emb_image": [], "emb_audio": []}
    for idx in index.split(EVAL_BATCH):
        with autocast(precision, device):
            f_img, f_aud = model.features(*batch_inputs(split, idx, VIEWS, device))
            emb_img, emb_aud = model.image_proj(f_img), model.audio_proj(f_aud)
        for key, value in (("feat_image", f_img), ("feat_audio", f_aud), ("emb_image", emb_img), ("emb_audio", emb_aud)):
            out[key].append(value.float().cpu())
    return {k: torch.cat(v) if v else torch.empty(0, FEATURE_DIM) for k, v in out.items()}


def fit_linear_probe(x, y, steps):
    """Multinomial logistic regression on fixed features: full-batch L-BFGS, zero start, fixed steps.

    The features are standardised with the training mean and std (dead ReLU
    units, std 0, stay 0). Zero initialisation and full batches make the fit
    deterministic without any random numbers. Returns a function features -> logits.
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
        loss = F.cross_entropy(probe(x), y) + PROBE_WEIGHT_DECAY * probe.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return lambda z: probe((z - mean) / std).detach()


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


def curves_figure(history, title, loss_name):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(epochs, [h["train_loss"] for h in history], marker="o", ms=3, label="train loss")
    ax.plot(epochs, [h["val_loss"] for h in history], marker="o", ms=3, label="validation loss")
    best = min(history, key=lambda h: h["val_loss"])
    ax.axvline(best["epoch"], color="grey", ls="--", lw=0.8, label=f"best epoch {best['epoch']}")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{loss_name} loss")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def similarity_figure(emb_image, emb_audio, labels, similarity, title):
    """Heat map of sim(image_i, audio_j) for a few test pairs, ordered by digit when labels are known."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    order = torch.arange(len(emb_image))
    if labels is not None:
        order = torch.sort(labels, stable=True).indices
    sims = similarity_matrix(emb_image[order], emb_audio[order], similarity).numpy()
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    im = ax.imshow(sims, cmap="viridis")
    if labels is not None:
        ticks = labels[order].tolist()
        ax.set_xticks(range(len(ticks)), ticks, fontsize=5)
        ax.set_yticks(range(len(ticks)), ticks, fontsize=5)
    ax.set_xlabel("audio (digit)" if labels is not None else "audio (test pair)")
    ax.set_ylabel("image (digit)" if labels is not None else "image (test pair)")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, label=f"{similarity} similarity")
    fig.tight_layout()
    return fig


def summary_line(m):
    r = m["test"]["retrieval"]
    text = (f"[{m['dataset']}] contrastive {m['loss']}: best epoch {m['best_epoch']} of {m['epochs_run']}, "
            f"val loss {m['val']['loss']:.4f}, tau {m['tau']:.4g}; test retrieval R@1 img->aud "
            f"{100 * r['recall@1_img2aud']:.2f}%, aud->img {100 * r['recall@1_aud2img']:.2f}% "
            f"(chance {100 / max(r['n'], 1):.2f}%)")
    if "label@1_img2aud" in r:
        text += f", same digit {100 * r['label@1_img2aud']:.2f}% / {100 * r['label@1_aud2img']:.2f}%"
    probe = m["test"]["probe"]
    if probe is not None:
        text += (f"; probe acc image {100 * probe['image']:.2f}%, audio {100 * probe['audio']:.2f}%, "
                 f"both {100 * probe['both']:.2f}%")
    else:
        text += "; test split unlabelled (no probe accuracy)"
    return text + f"; {m['seconds_per_epoch']:.1f} s/epoch"


def main():
    parser = training_parser(__doc__)
    parser.set_defaults(batch_size=DEFAULT_BATCH)
    parser.add_argument("--loss", default="nt_xent", choices=("nt_xent", "nt_log"),
                        help="nt_xent: symmetric in-batch NT-Xent (CLIP); nt_log: all-pairs NT-Log (SigLIP)")
    parser.add_argument("--tau", type=positive_float, default=0.1,
                        help="temperature (the initial one with --learn-tau, then within [0.01, 1])")
    parser.add_argument("--learn-tau", action="store_true", help="learn the temperature (clamped 1/tau in [1, 100])")
    parser.add_argument("--learn-bias", action="store_true",
                        help="nt_log only: learn the bias b of sigmoid(s/tau + b), starting at -ln 127")
    parser.add_argument("--similarity", default="cosine", choices=SIMILARITIES,
                        help="similarity of the projections in the loss and in retrieval")
    parser.add_argument("--proj-dim", type=positive_int, default=64, help="output width of the projection heads")
    parser.add_argument("--probe-steps", type=positive_int, default=100,
                        help="L-BFGS iterations of each linear probe")
    args = parser.parse_args()
    if args.learn_bias and args.loss != "nt_log":
        raise UsageError("--learn-bias needs --loss nt_log (NT-Xent has no bias)")
    build_loss(args)  # refuse a bad --tau before a run folder is made
    run_dir = prepare_run_dir(args, default_name=f"{MODEL}-{args.loss}-s{args.seed}", parser=parser)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    device = pick_device(args.device)
    precision = resolve_precision(args.precision, device)
    dataset = load_run_data(args, run_dir)
    train, test = dataset.train, dataset.test
    train_idx, val_idx, test_idx = prepare_splits(dataset, args, run_dir)

    set_seed(args.seed)
    shuffle_gen = torch.Generator().manual_seed(args.seed)  # batch order, apart from dropout's RNG
    model = ContrastiveModel(build_loss(args), args.proj_dim).to(device)
    optimizer = make_adam(model.parameters(), args.lr)
    early = EarlyStopping(args.patience)
    config = run_config(args, MODEL, dataset, device, precision, {"params": count_parameters(model), "loss": args.loss})
    last_path = os.path.join(run_dir, "checkpoints", "last.pt")
    best_path = os.path.join(run_dir, "checkpoints", "best.pt")

    progress = {"epoch": 0, "history": [], "train_seconds": 0.0, "order": None,
                "done_batches": 0, "loss_sum": 0.0, "n_seen": 0}
    if args.resume:
        progress = restore_training(load_checkpoint(last_path), model, optimizer, early, shuffle_gen)
        print(f"resuming {run_dir} after epoch {progress['epoch']}"
              + (f", batch {progress['done_batches']}" if progress["order"] is not None else ""))
    else:
        save_json(config, os.path.join(run_dir, "config.json"))
    history, train_seconds = progress["history"], progress["train_seconds"]
    # purge_step drops any events logged after the checkpoint, so a resumed curve has no duplicates
    writer = SummaryWriter(run_dir, purge_step=len(history) + 1 if args.resume else None)

    with GracefulStop() as stop:
        epochs = tqdm(range(progress["epoch"] + 1, args.max_epochs + 1), desc="epochs", disable=None)
        for epoch in epochs:
            if early.should_stop:
                break
            start = time.time()
            model.train()
            if progress["order"] is None:  # a fresh epoch; a resumed half epoch keeps its saved order
                progress.update(order=shuffle_order(train_idx, shuffle_gen),
                                done_batches=0, loss_sum=0.0, n_seen=0)
            batches = list(batch_indices(progress["order"], args.batch_size))
            for b in tqdm(range(progress["done_batches"], len(batches)), desc=f"epoch {epoch}",
                          leave=False, disable=None):
                index = batches[b]
                image, audio = batch_inputs(train, index, VIEWS, device)
                with autocast(precision, device):
                    loss = model(image, audio)  # pair i is the positive of row/column i; no labels
                check_finite(loss, epoch, b + 1)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                progress["loss_sum"] += loss.item() * len(index)
                progress["n_seen"] += len(index)
                progress["done_batches"] = b + 1
                if stop.requested:
                    break
            train_seconds += time.time() - start
            if stop.requested:  # finish here: save the half epoch so --resume continues exactly
                save_checkpoint(last_path, **training_checkpoint(
                    model, optimizer, early, shuffle_gen, **{**progress, "epoch": epoch - 1,
                                                             "history": history, "train_seconds": train_seconds}))
                print(f"\nstopped by signal {stop.signum} in epoch {epoch}; resume with:\n  {resume_command(args)}")
                return stop.exit_code

            val_loss = contrastive_loss(model, train, val_idx, args.batch_size, device, precision)
            if not math.isfinite(val_loss):
                raise TrainingError(f"non-finite validation loss at epoch {epoch}; best.pt is untouched")
            seconds = time.time() - start
            history.append({"epoch": epoch, "train_loss": progress["loss_sum"] / progress["n_seen"],
                            "val_loss": val_loss, "tau": model.loss.tau, "bias": bias_of(model.loss),
                            "seconds": seconds, "train_samples": progress["n_seen"]})
            scalars = [("loss/train", history[-1]["train_loss"]), ("loss/val", val_loss), ("tau", model.loss.tau),
                       ("lr", optimizer.param_groups[0]["lr"]), ("time/epoch", seconds)]
            if args.loss == "nt_log":
                scalars.append(("bias", history[-1]["bias"]))
            for tag, value in scalars:
                writer.add_scalar(tag, value, epoch)
            writer.flush()
            if early.step(val_loss, epoch):
                save_checkpoint(best_path, model=model.state_dict(), epoch=epoch, val_loss=val_loss,
                                kind=MODEL, config=config)
            progress["order"] = None
            save_checkpoint(last_path, **training_checkpoint(
                model, optimizer, early, shuffle_gen, epoch=epoch, history=history, train_seconds=train_seconds))
            epochs.write(f"epoch {epoch:3d}  train loss {history[-1]['train_loss']:.4f}  val loss {val_loss:.4f}  "
                         f"tau {model.loss.tau:.4g}  {seconds:.1f}s" + ("  *best*" if early.best_epoch == epoch else ""))

    # Only now, with the best validation weights back in place, is the test split used.
    model.load_state_dict(load_checkpoint(best_path)["model"])
    best = next(h for h in history if h["epoch"] == early.best_epoch)
    title = f"contrastive {args.loss} [{dataset.name}]"
    test_codes = encode(model, test, test_idx, device, precision)
    test_labels = test.label[test_idx] if test.labeled else None
    retrieval = retrieval_metrics(test_codes["emb_image"], test_codes["emb_audio"], test_labels, args.similarity)

    train_codes = encode(model, train, train_idx, device, precision)
    eval_sets = {"val": (encode(model, train, val_idx, device, precision), train.label[val_idx])}
    if test_labels is not None:
        eval_sets["test"] = (test_codes, test_labels)
    probes = probe_accuracies(train_codes, train.label[train_idx], eval_sets, args.probe_steps)

    epochs_run = len(history)
    seen = sum(h["train_samples"] for h in history)
    metrics = {
        "model": MODEL, "loss": args.loss, "similarity": args.similarity,
        "tau": model.loss.tau, "learn_tau": args.learn_tau,
        "bias": bias_of(model.loss), "learn_bias": args.learn_bias,
        "dataset": dataset.name, "synthetic": dataset.is_synthetic, "fingerprint": dataset.fingerprint,
        "seed": args.seed, "data_seed": args.data_seed, "limit": args.limit,
        "best_epoch": early.best_epoch, "epochs_run": epochs_run, "stopped_early": early.should_stop,
        "val": {"loss": best["val_loss"], "probe": probes["val"]},
        "test": {"labeled": test_labels is not None, "retrieval": retrieval, "probe": probes.get("test")},
        "params": count_parameters(model),
        "train_seconds": train_seconds,
        "seconds_per_epoch": train_seconds / max(epochs_run, 1),
        "samples_per_second": seen / train_seconds if train_seconds > 0 else None,
    }

    first = slice(0, min(SIMILARITY_FIGURE_PAIRS, len(test_idx)))
    figures = {"curves": curves_figure(history, f"{title}: training curves", args.loss)}
    if len(test_idx):
        figures["similarity_test"] = similarity_figure(
            test_codes["emb_image"][first], test_codes["emb_audio"][first],
            None if test_labels is None else test_labels[first], args.similarity,
            f"{title}: image-audio similarity, first {first.stop} test pairs"
            + (" sorted by digit" if test_labels is not None else ""))
    for name, fig in figures.items():
        writer.add_figure(f"figures/{name}", fig, global_step=epochs_run, close=False)
        save_drawn_figure(fig, os.path.join(run_dir, "figures", f"{name}.png"))

    hparams = {k: v for k, v in config["args"].items() if isinstance(v, (int, float, str, bool))}
    hparams["dataset"] = dataset.name
    final = {"hparam/val_loss": best["val_loss"], "hparam/tau": metrics["tau"],
             "hparam/test_recall1_img2aud": retrieval["recall@1_img2aud"],
             "hparam/test_recall1_aud2img": retrieval["recall@1_aud2img"]}
    if metrics["test"]["probe"] is not None:
        final.update({f"hparam/test_probe_{k}": v for k, v in metrics["test"]["probe"].items()})
    writer.add_hparams(hparams, final, run_name="hparams")  # fixed name: one hparams entry per run
    writer.flush()
    writer.close()
    save_json(metrics, os.path.join(run_dir, "metrics.json"))  # last: its presence means the run finished
    print(summary_line(metrics))
    return 0


if __name__ == "__main__":
    run_main(main)
