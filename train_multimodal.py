"""Problems 1e/1f: train the multimodal network (Conv2Net + Conv1Net featurizers,
a fusion method, head fc(d_fused->64)-ReLU-fc(64->10)) on the noisy digit pairs.

Same loop, flags and outputs as the unimodal scripts, plus --fusion and the
fusion's widths. Featurizers train from scratch unless --init-from loads them
from a best.pt of train_image.py / train_audio.py / train_contrastive.py /
this script.
"""
import math
import os
import time

import torch
import torch.nn.functional as F
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from common.cli import load_run_data, prepare_run_dir, resume_command, run_config, run_main, training_parser
from common.data import batch_indices, shuffle_order
from common.io import save_json
from common.cli import UsageError, positive_int
from common.fusion import DEFAULT_WIDTHS
from common.models import FEATURE_DIM, count_parameters
from common.multimodal import FUSION_CHOICES, build_multimodal, load_featurizer_weights
from common.reporting import finish_run, log_text_summary
from common.training import (EarlyStopping, GracefulStop, TrainingError, autocast, batch_inputs, check_finite,
                             evaluate, load_checkpoint, make_adam, pick_device, prepare_splits,
                             resolve_precision, restore_training, save_checkpoint, set_seed,
                             training_checkpoint)

MODEL = "multimodal"
VIEWS = ("image", "audio")  # the inputs this model sees, in forward() order
EVAL_BATCH = 512


def main():
    parser = training_parser(__doc__)
    parser.add_argument("--fusion", default="concat", choices=FUSION_CHOICES,
                        help="how the two 128-d feature vectors are fused (late = average of two unimodal heads)")
    parser.add_argument("--image-dim", type=positive_int, default=FEATURE_DIM,
                        help="width of the image featurizer's output vector (the exam: 128)")
    parser.add_argument("--audio-dim", type=positive_int, default=FEATURE_DIM,
                        help="width of the audio featurizer's output vector (the exam: 128); "
                             "add, mul, max, attention and gated need it equal to --image-dim")
    parser.add_argument("--fused-dim", type=positive_int, default=DEFAULT_WIDTHS["fused_dim"],
                        help="output width of bilinear / factorized, token width of attention-tokens")
    parser.add_argument("--hidden-dim", type=positive_int, default=DEFAULT_WIDTHS["hidden_dim"],
                        help="hidden (rank) width h of factorized")
    parser.add_argument("--heads", type=positive_int, default=DEFAULT_WIDTHS["heads"],
                        help="attention heads of attention / attention-tokens")
    parser.add_argument("--init-from", action="append", default=[], metavar="CHECKPOINT",
                        help="load featurizer weights from this best.pt before training (repeatable: "
                             "e.g. the image run's and the audio run's)")
    args = parser.parse_args()
    run_dir = prepare_run_dir(args, default_name=f"{MODEL}-{args.fusion}-s{args.seed}", parser=parser)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    device = pick_device(args.device)
    precision = resolve_precision(args.precision, device)
    dataset = load_run_data(args, run_dir)
    train = dataset.train

    set_seed(args.seed)
    shuffle_gen = torch.Generator().manual_seed(args.seed)  # batch order, apart from dropout's RNG
    try:
        model = build_multimodal(args.fusion, args.fused_dim, args.hidden_dim, args.heads,
                                 image_dim=args.image_dim, audio_dim=args.audio_dim)
    except ValueError as e:  # e.g. a fusion that needs equal widths
        raise UsageError(str(e)) from None
    loaded_from = {}  # featurizer -> checkpoint it came from
    for path in args.init_from if not args.resume else []:  # a resumed run has its weights in last.pt
        ckpt = load_checkpoint(path)
        kind = ckpt.get("kind")
        try:
            loaded = load_featurizer_weights(model, ckpt["model"], kind if kind in ("image", "audio") else None)
        except ValueError as e:
            raise UsageError(f"--init-from {path}: {e}") from None
        for featurizer in loaded:
            if featurizer in loaded_from:
                raise UsageError(f"--init-from: both {loaded_from[featurizer]} and {path} hold the {featurizer} "
                                 "featurizer; give each featurizer once")
            loaded_from[featurizer] = path
        print(f"initialised the {' and '.join(loaded)} featurizer(s) from {path}")
    model = model.to(device)
    train_idx, val_idx, test_idx = prepare_splits(dataset, args, run_dir)
    optimizer = make_adam(model.parameters(), args.lr)
    early = EarlyStopping(args.patience)
    config = run_config(args, MODEL, dataset, device, precision, {"params": count_parameters(model), "fusion": args.fusion})
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
                label = train.label[index].to(device)
                with autocast(precision, device):
                    logits = model(image, audio)
                loss = F.cross_entropy(logits.float(), label)  # the loss in fp32 whatever the precision
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

            val = evaluate(model, train, val_idx, VIEWS, EVAL_BATCH, device, precision)
            if not math.isfinite(val["loss"]):
                raise TrainingError(f"non-finite validation loss at epoch {epoch}; best.pt is untouched")
            seconds = time.time() - start
            history.append({"epoch": epoch, "train_loss": progress["loss_sum"] / progress["n_seen"],
                            "val_loss": val["loss"], "val_acc": val["acc"], "seconds": seconds,
                            "train_samples": progress["n_seen"]})
            for tag, value in (("loss/train", history[-1]["train_loss"]), ("loss/val", val["loss"]),
                               ("acc/val", val["acc"]), ("lr", optimizer.param_groups[0]["lr"]),
                               ("time/epoch", seconds)):
                writer.add_scalar(tag, value, epoch)
            writer.flush()
            if early.step(val["loss"], epoch):
                save_checkpoint(best_path, model=model.state_dict(), epoch=epoch, val_loss=val["loss"],
                                kind=MODEL, config=config)
            progress["order"] = None
            save_checkpoint(last_path, **training_checkpoint(
                model, optimizer, early, shuffle_gen, epoch=epoch, history=history, train_seconds=train_seconds))
            epochs.write(f"epoch {epoch:3d}  train loss {history[-1]['train_loss']:.4f}  val loss {val['loss']:.4f}  "
                         f"val acc {100 * val['acc']:.2f}%  {seconds:.1f}s" + ("  *best*" if early.best_epoch == epoch else ""))

    # Only now, with the best validation weights back in place, is the test split used.
    model.load_state_dict(load_checkpoint(best_path)["model"])
    best = next(h for h in history if h["epoch"] == early.best_epoch)
    metrics = finish_run(run_dir=run_dir, model=model, dataset=dataset, train_split=train, train_index=train_idx,
                         val_metrics={"loss": best["val_loss"], "acc": best["val_acc"]}, test_index=test_idx,
                         views=VIEWS, batch_size=EVAL_BATCH, device=device, history=history, early=early,
                         params=count_parameters(model), train_seconds=train_seconds, writer=writer, config=config,
                         title=f"multimodal, {args.fusion} fusion [{dataset.name}]")
    writer.close()
    print(log_text_summary(metrics))
    return 0


if __name__ == "__main__":
    run_main(main)
