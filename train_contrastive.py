"""Problem 2: contrastive pre-training of the two featurizers on image/audio pairs, without labels.

Image i and audio i of the training split form a positive pair; every other
pairing inside the batch is a negative. Each featurizer (Conv2Net's image
featurizer, Conv1Net's audio featurizer, 128-d outputs) gets a small projection
head fc(128->128)-ReLU-fc(128->proj_dim), and the two projections are trained
with the symmetric in-batch NT-Xent (CLIP) loss or the all-pairs NT-Log
(SigLIP) loss of common/nets/losses.py. Labels are used only afterwards, to
measure what was learned: after the best weights (lowest validation
contrastive loss) are restored, the test split gives cross-modal retrieval
(recall@1 of the exact partner, share of top-1 hits with the same digit) and
the accuracy of linear probes (logistic regression on the frozen 128-d
featurizer outputs, fitted on the training indices).

The defaults are the first recipe's (kept so its runs stay reproducible). The second recipe,
`--recipe contrastive-v2` (scripts/contrastive.sh's default; `--list-recipes` shows every recipe),
turns on: --head mlp-bn (BatchNorm in the head, L2-normalised projections), --feat-dropout 0.1,
--optimizer adamw with --weight-decay, --warmup-epochs 1 and --schedule cosine, --augment views
(independent extra noise and shifts per view at every step: common/data/augment.py) and --select
val_digit1 (the checkpoint with the best validation digit@1, not the lowest loss); `--recipe nt-log`
adds the learned temperature and bias with their own learning rate (--own-lr). Every epoch logs validation
digit@1 both ways, overall and per noise regime, to TensorBoard.

Writes runs/NAME/ like the other train scripts; checkpoints/best.pt can seed a
multimodal run: python train_multimodal.py --init-from runs/NAME/checkpoints/best.pt, and
evaluate_contrastive.py RUN_DIR measures its frozen features at a few labels.
"""
import torch

from common.data import REGIMES
from common.data.augment import build_augment
from common.data.batching import epoch_length, steps_per_epoch
from common.training.retrieval import retrieval_by_group, validate
from common.facts import AudioFrontend
from common.nets.featurizers import count_parameters
from common.nets.losses import build_contrastive_loss
from common.nets.models import ContrastiveModel
from common.training.cli import UsageError, parse_training_args, run_main, training_parser
from common.training.finish import contrastive_summary, finish_contrastive_run
from common.training.lifecycle import Progress, prepare_splits, start_run
from common.training.loop import (EarlyStopping, GracefulStop, autocast, check_finite, clip_gradients, make_optimizer,
                                  make_schedule, selection_score, set_seed)

MODEL = "contrastive"
OWN_LR_PARAMS = ("loss.temperature.log_inv_tau", "loss.bias")  # --own-lr's parameters, when learned


def build_loss(args):
    try:
        return build_contrastive_loss(args.loss, args.similarity, args.tau, args.learn_tau, args.learn_bias,
                                      args.bias_init, args.batch_size)
    except ValueError as e:  # e.g. an initial tau outside the learnable range
        raise UsageError(str(e)) from None


def main():
    parser = training_parser(MODEL, __doc__)  # the flags of common/flags.py that this script takes
    args = parse_training_args(parser, MODEL)  # --recipe's flags filled in
    build_loss(args)  # refuse a bad --tau before a run folder is made
    setup = start_run(args, parser, MODEL, default_name=f"{MODEL}-{args.loss}-s{args.seed}")
    device, precision, train = setup.device, setup.precision, setup.dataset.train
    train_idx, val_idx, test_idx = prepare_splits(setup)
    set_seed(args.seed)
    model = ContrastiveModel(build_loss(args), args.proj_dim, dropout=args.feat_dropout, head=args.head,
                             audio_frontend=AudioFrontend.of(args)).to(device)
    if args.head == "mlp-bn" and epoch_length(len(train_idx), args.epoch_pairs) % args.batch_size == 1:
        raise UsageError(f"--head mlp-bn: an epoch of {epoch_length(len(train_idx), args.epoch_pairs)} training pairs "
                         "leaves a last batch of one, which BatchNorm cannot train on; change --batch-size")
    optimizer = make_optimizer(model, args, own_names=OWN_LR_PARAMS, own_lr=args.own_lr)
    augment = build_augment(args.augment)
    early = EarlyStopping(args.patience)
    run = Progress(setup, model, optimizer, early, params=count_parameters(model), loss=args.loss)
    schedule = make_schedule(optimizer, args, steps_per_epoch(len(train_idx), args.batch_size, args.epoch_pairs))
    val_labels = train.label[val_idx]
    # course files carry no noise regime: their retrieval is reported for all pairs only
    regime_names = REGIMES if "regime" in train.meta else ()
    val_regimes = train.meta["regime"][val_idx] if regime_names else torch.zeros(len(val_idx), dtype=torch.long)

    with GracefulStop() as stop:
        for epoch in run.epochs():
            model.train()
            for index in run.batches(train_idx):
                image, audio = train.image[index], train.audio[index]
                if augment is not None:  # a fresh draw for each view of each pair (off by default)
                    image, audio = augment.images(image), augment.audio(audio)
                image, audio = image.to(device), audio.to(device)
                with autocast(precision, device):
                    loss = model(image, audio)  # pair i is the positive of row/column i; no labels
                check_finite(loss, epoch, run.batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                clip_gradients(model, args.clip_grad)  # --clip-grad (off by default)
                schedule.step()  # this step's learning rate (untouched by default)
                optimizer.step()
                run.count(loss, len(index))
                if stop.requested:
                    break
            if stop.requested:
                return run.save_and_exit(stop)
            val_loss, emb_image, emb_audio = validate(model, train, val_idx, args.batch_size, device, precision)
            by_regime = retrieval_by_group(emb_image, emb_audio, val_labels, val_regimes, regime_names,
                                           args.similarity)
            for regime, scores in by_regime.items():
                for key in ("digit@1_img2aud", "digit@1_aud2img"):
                    if scores[key] is not None:
                        run.writer.add_scalar(f"val_{key.replace('@', '')}/{regime}", scores[key], epoch)
            digit1 = {k: by_regime["all"][f"digit@1_{k}"] for k in ("img2aud", "aud2img")}
            score = selection_score({"loss": val_loss, "digit1": (digit1["img2aud"] + digit1["aud2img"]) / 2},
                                    args.select)
            early.step(score, epoch)  # a best epoch if strictly better: lower loss or higher digit@1 (NaN never is)
            run.end_epoch(val_loss, tau=model.loss.tau, bias=model.bias,  # last.pt, then best.pt if the best
                          val_digit1_img2aud_acc=digit1["img2aud"], val_digit1_aud2img_acc=digit1["aud2img"])

    # Only now, with the best validation weights back in place, are labels and the test split used.
    best = run.restore_best()
    title = f"contrastive {args.loss} [{setup.dataset.name}]"
    metrics = finish_contrastive_run(run, setup.dataset, train_idx, val_idx, test_idx, best, title)
    print(contrastive_summary(metrics))
    return 0


if __name__ == "__main__":
    run_main(main)
