"""Figures: data grids, training curves, confusion matrices, samples with their logits.

Every function returns a matplotlib Figure; callers save it with
`common.io.save_figure` and may also hand it to TensorBoard.
"""
import matplotlib

matplotlib.use("Agg")  # no screen needed; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .facts import NOISE_SWEEPS, REGIMES  # noqa: E402


def _regime(split, i):
    if "regime" in split.meta:
        return REGIMES[int(split.meta["regime"][i])]
    return "regime unknown"


def _label(split, i):
    return "?" if split.label is None else str(int(split.label[i]))


def pairs_grid(split, indices, title):
    """Each column one pair: the image above, the waveform below."""
    n = len(indices)
    fig, axes = plt.subplots(2, n, figsize=(2.2 * n, 4.0), squeeze=False)
    for col, i in enumerate(indices):
        ax_img, ax_wav = axes[0, col], axes[1, col]
        ax_img.imshow(split.image[i, 0].numpy(), cmap="gray", vmin=0, vmax=1)
        ax_img.set_title(f"#{int(i)} digit {_label(split, i)}\n{_regime(split, i)}", fontsize=8)
        ax_img.axis("off")
        ax_wav.plot(np.arange(split.audio.shape[-1]) / 8000, split.audio[i, 0].numpy(), lw=0.3)
        ax_wav.set_xlabel("s", fontsize=7)
        ax_wav.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def training_curves(history, title, best_epoch, loss_label="cross-entropy"):
    """Train and validation loss per epoch (left), a line at the epoch best.pt kept; on the right the
    validation accuracy of a classifier, or the temperature of a contrastive run."""
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_right) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], marker="o", ms=3, label="train loss")
    ax_loss.plot(epochs, [h["val_loss"] for h in history], marker="o", ms=3, label="validation loss")
    ax_loss.axvline(best_epoch, color="grey", ls="--", lw=0.8, label=f"best epoch {best_epoch}")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel(loss_label)
    ax_loss.legend(fontsize=8)
    if "val_acc" in history[0]:
        ax_right.plot(epochs, [100 * h["val_acc"] for h in history], marker="o", ms=3, color="C2")
        ax_right.set_ylabel("validation accuracy (%)")
    else:
        ax_right.plot(epochs, [h["tau"] for h in history], marker="o", ms=3, color="C2")
        ax_right.set_ylabel("temperature tau")
    ax_right.set_xlabel("epoch")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def confusion_matrix_figure(confusion, title):
    confusion = np.asarray(confusion)
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    im = ax.imshow(confusion, cmap="Blues")
    for (r, c), v in np.ndenumerate(confusion):
        ax.text(c, r, str(v), ha="center", va="center", fontsize=6,
                color="white" if v > confusion.max() / 2 else "black")
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def samples_with_logits(split, indices, logits, views, title):
    """Five samples, each drawn as its views with a bar chart of the model's logits.

    views: a subset of ("image", "audio") to draw for each sample.
    """
    n = len(indices)
    rows = len(views) + 1
    fig, axes = plt.subplots(rows, n, figsize=(2.4 * n, 1.9 * rows), squeeze=False)
    for col, (i, row_logits) in enumerate(zip(indices, logits)):
        row = 0
        pred = int(np.argmax(row_logits))
        head = f"#{int(i)} true {_label(split, i)}, pred {pred}\n{_regime(split, i)}"
        if "image" in views:
            axes[row, col].imshow(split.image[i, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            axes[row, col].axis("off")
            row += 1
        if "audio" in views:
            axes[row, col].plot(split.audio[i, 0].numpy(), lw=0.3)
            axes[row, col].set_xticks([])
            axes[row, col].tick_params(labelsize=6)
            row += 1
        axes[0, col].set_title(head, fontsize=7)
        colors = ["C3" if d == pred else "C0" for d in range(10)]
        axes[row, col].bar(range(10), row_logits, color=colors)
        axes[row, col].set_xticks(range(10))
        axes[row, col].tick_params(labelsize=6)
        axes[row, col].set_xlabel("logit per digit", fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def robustness_figure(result, title):
    """Test accuracy vs pixel replacement p (image sweep) and vs SNR (audio sweep) of one run,
    with the fresh draw's accuracy as a reference line."""
    panels = [sweep for sweep in NOISE_SWEEPS if sweep.key in result]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.6), squeeze=False)
    for ax, sweep in zip(axes[0], panels):
        xs = [row[sweep.level_key] for row in result[sweep.key]]
        ax.plot(xs, [100 * row["acc"] for row in result[sweep.key]], marker="o", ms=4)
        if "fresh" in result:
            ax.axhline(100 * result["fresh"]["acc"], color="grey", ls="--", lw=0.8, label="fresh draw (recipe mix)")
            ax.legend(fontsize=8)
        ax.set_xlabel(f"{sweep.axis_label} ({sweep.held})")
        if sweep.invert:
            ax.invert_xaxis()  # worse to the right, as for p
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def similarity_figure(emb_image, emb_audio, labels, similarity, title):
    """Heat map of sim(image_i, audio_j) for a few test pairs, ordered by digit when labels are known."""
    import torch

    from .nets.losses import similarity_matrix
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


def digit_figure(image, title):
    """A 28x28 image as a model is fed it (predict.py --show)."""
    fig, ax = plt.subplots(figsize=(2.6, 2.9))
    ax.imshow(image, cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=7)
    fig.tight_layout()
    return fig
