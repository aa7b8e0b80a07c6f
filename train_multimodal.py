"""Problems 1e/1f: train the multimodal network (Conv2Net + Conv1Net featurizers,
a fusion method, head fc(d_fused->64)-ReLU-fc(64->10)) on the noisy digit pairs.

Same loop, flags and outputs as the unimodal scripts, plus --fusion and the
fusion's widths. Featurizers train from scratch unless --init-from loads them
from a best.pt of train_image.py / train_audio.py / train_contrastive.py /
this script. --modality-dropout trains the network to survive a lost view;
--audio-frontend mel swaps the exam's waveform CNN for a log-mel one (both
opt-in: the defaults are the exam's network and training).
"""
import torch.nn.functional as F

from common.data.augment import speed_perturb
from common.data.batching import steps_per_epoch
from common.facts import AudioFrontend
from common.nets.featurizers import count_parameters
from common.nets.models import build_multimodal, draw_present_views, fill_missing, missing_view_stand_in
from common.training.calibration import fit_view_temperatures
from common.training.cli import UsageError, parse_training_args, run_main, training_parser
from common.training.diagnostics import start_diagnostics
from common.training.finish import finish_run, log_text_summary
from common.training.init_from import apply_init_from
from common.training.lifecycle import Progress, prepare_splits, start_run
from common.training.loop import (EarlyStopping, GracefulStop, autocast, check_finite, clip_gradients, evaluate,
                                  make_optimizer, make_schedule, selection_score, set_seed)

MODEL = "multimodal"
VIEWS = ("image", "audio")  # the inputs this model sees, in forward() order
EVAL_BATCH = 512


def main():
    parser = training_parser(MODEL, __doc__)  # the flags of common/flags.py that this script takes
    args = parse_training_args(parser, MODEL)  # --recipe's flags filled in
    setup = start_run(args, parser, MODEL, default_name=f"{MODEL}-{args.fusion}-s{args.seed}")
    device, precision, train = setup.device, setup.precision, setup.dataset.train
    set_seed(args.seed)
    try:
        model = build_multimodal(args.fusion, args.fused_dim, args.hidden_dim, args.heads,
                                 image_dim=args.image_dim, audio_dim=args.audio_dim,
                                 audio_frontend=AudioFrontend.of(args), calibrated=args.calibrate)
    except ValueError as e:  # e.g. a fusion that needs equal widths
        raise UsageError(str(e)) from None
    init_source = apply_init_from(model, args)  # --init-from (a resumed run has its weights in last.pt)
    model = model.to(device)
    train_idx, val_idx, test_idx = prepare_splits(setup)
    # what a view lost to modality dropout becomes: evaluate.py's stand-in for a missing view
    stand_ins = tuple(missing_view_stand_in(train, train_idx, view, args.modality_dropout_fill) for view in VIEWS) \
        if args.modality_dropout and args.fusion != "late" else None
    optimizer = make_optimizer(model, args)  # the exam's Adam unless --optimizer adamw
    early = EarlyStopping(args.patience)
    run = Progress(setup, model, optimizer, early, params=count_parameters(model), fusion=args.fusion, **init_source)
    schedule = make_schedule(optimizer, args, steps_per_epoch(len(train_idx), args.batch_size, args.epoch_pairs))
    diagnostics = start_diagnostics(model, args, run.writer, train, val_idx, VIEWS, device)  # off by default

    with GracefulStop() as stop:
        for epoch in run.epochs():
            model.train()
            for index in run.batches(train_idx):
                image = train.image[index].to(device)
                # --speed-perturb (off by default: the waveforms themselves, nothing drawn)
                audio = speed_perturb(train.audio[index], args.speed_perturb).to(device)
                label = train.label[index].to(device)
                # modality dropout (off by default, and then no random number is drawn)
                present = draw_present_views(len(index), args.modality_dropout) if args.modality_dropout else None
                with autocast(precision, device):
                    if present is None:
                        logits = model(image, audio)
                    elif args.fusion == "late":  # the lost view's head leaves the average
                        logits = model(image, audio, present=present.to(device))
                    else:
                        logits = model(*fill_missing(image, audio, present, stand_ins))
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
            val = evaluate(model, train, val_idx, VIEWS, EVAL_BATCH, device, precision)
            early.step(selection_score(val, args.select), epoch)  # a best epoch if strictly better (NaN never is)
            diagnostics.end_epoch(epoch)
            run.end_epoch(val["loss"], val_acc=val["acc"])  # last.pt, then best.pt if this epoch is the best

    # Only now, with the best validation weights back in place, is the test split used.
    best = run.restore_best()
    if args.calibrate:  # late fusion's per-head temperatures, from the validation pairs (off by default)
        best = {**best, "calibration": fit_view_temperatures(model, train, val_idx, device, precision)}
        run.save_best(epoch=best["epoch"])  # best.pt with its temperatures, for evaluate.py and predict.py
    title = f"multimodal, {args.fusion} fusion [{setup.dataset.name}]"
    metrics = finish_run(run, setup.dataset, train_idx, test_idx, VIEWS, EVAL_BATCH, best, title)
    print(log_text_summary(metrics))
    return 0


if __name__ == "__main__":
    run_main(main)
