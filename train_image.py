"""Problem 1a: train the image-only Conv2Net on the noisy digit images.

Adam, dropout 0.5, early stopping on validation loss, best weights restored
before the test split is touched once. Writes runs/NAME/ (config, metrics,
TensorBoard events, checkpoints, figures, test predictions).

train_audio.py runs this same loop on the waveforms with Conv1Net (Problem 1b).
"""
import torch.nn.functional as F

from common.data.augment import speed_perturb
from common.data.batching import steps_per_epoch
from common.facts import AudioFrontend
from common.nets.featurizers import Conv2Net, count_parameters
from common.nets.models import audio_classifier
from common.training.cli import parse_training_args, run_main, training_parser
from common.training.diagnostics import start_diagnostics
from common.training.finish import finish_run, log_text_summary
from common.training.lifecycle import Progress, prepare_splits, start_run
from common.training.loop import (EarlyStopping, GracefulStop, autocast, check_finite, clip_gradients, evaluate,
                                  make_optimizer, make_schedule, selection_score, set_seed)

EVAL_BATCH = 512


def build_network(view, args):
    """The exam's unimodal classifier of the view (Conv2Net, Conv1Net), or the audio's log-mel variant."""
    if view == "image":
        return Conv2Net(), "Conv2Net"
    return audio_classifier(AudioFrontend.of(args)), \
        "Conv1Net" if args.audio_frontend == "raw" else "log-mel CNN"


def main(view="image", description=__doc__):
    parser = training_parser(view, description)  # the flags of common/flags.py that this script takes
    args = parse_training_args(parser, view)  # --recipe's flags filled in
    setup = start_run(args, parser, view, default_name=f"{view}-s{args.seed}")
    device, precision, train = setup.device, setup.precision, setup.dataset.train
    set_seed(args.seed)
    model, network_name = build_network(view, args)
    model = model.to(device)
    train_idx, val_idx, test_idx = prepare_splits(setup)
    optimizer = make_optimizer(model, args)  # the exam's Adam unless --optimizer adamw
    early = EarlyStopping(args.patience)
    run = Progress(setup, model, optimizer, early, params=count_parameters(model))
    schedule = make_schedule(optimizer, args, steps_per_epoch(len(train_idx), args.batch_size, args.epoch_pairs))
    diagnostics = start_diagnostics(model, args, run.writer, train, val_idx, (view,), device)  # off by default

    with GracefulStop() as stop:
        for epoch in run.epochs():
            model.train()
            for index in run.batches(train_idx):
                x, label = getattr(train, view)[index], train.label[index].to(device)
                if view == "audio":  # --speed-perturb (off by default: x itself, nothing drawn)
                    x = speed_perturb(x, args.speed_perturb)
                x = x.to(device)
                with autocast(precision, device):
                    logits = model(x)
                loss = F.cross_entropy(logits.float(), label)  # the loss in fp32 whatever the precision
                check_finite(loss, epoch, run.batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                diagnostics.after_backward()
                clip_gradients(model, args.clip_grad)  # --clip-grad (off by default)
                schedule.step()  # this step's learning rate (untouched by default)
                optimizer.step()
                run.count(loss, len(index))
                if stop.requested:
                    break
            if stop.requested:
                return run.save_and_exit(stop)
            val = evaluate(model, train, val_idx, (view,), EVAL_BATCH, device, precision)
            early.step(selection_score(val, args.select), epoch)  # a best epoch if strictly better (NaN never is)
            diagnostics.end_epoch(epoch)
            run.end_epoch(val["loss"], val_acc=val["acc"])  # last.pt, then best.pt if this epoch is the best

    # Only now, with the best validation weights back in place, is the test split used.
    best = run.restore_best()
    title = f"{view}-only {network_name} [{setup.dataset.name}]"
    metrics = finish_run(run, setup.dataset, train_idx, test_idx, (view,), EVAL_BATCH, best, title)
    print(log_text_summary(metrics))
    return 0


if __name__ == "__main__":
    run_main(main)
