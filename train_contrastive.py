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
from common.argtypes import positive_float, positive_int
from common.cli import UsageError, add_audio_frontend_flags, check_audio_frontend_flags, run_main, training_parser
from common.contrastive import SIMILARITIES, AllPairsNTLog, InBatchNTXent, mean_contrastive_loss
from common.models import count_parameters
from common.multimodal import ContrastiveModel
from common.reporting import contrastive_summary, finish_contrastive_run
from common.run import Progress, prepare_splits, start_run
from common.training import EarlyStopping, GracefulStop, autocast, check_finite, make_adam, set_seed

MODEL = "contrastive"
DEFAULT_BATCH = 128  # more in-batch negatives than the classifiers' 64; the learned NT-Log bias assumes 128


def build_loss(args):
    try:
        if args.loss == "nt_xent":
            return InBatchNTXent(args.similarity, args.tau, args.learn_tau)
        return AllPairsNTLog(args.similarity, args.tau, args.learn_tau, learn_bias=args.learn_bias)
    except ValueError as e:  # e.g. an initial tau outside the learnable range
        raise UsageError(str(e)) from None


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
    add_audio_frontend_flags(parser)
    args = parser.parse_args()
    check_audio_frontend_flags(args)
    if args.label_fraction != 1.0:
        raise UsageError("--label-fraction is for the classifiers: contrastive pre-training uses no labels")
    if args.learn_bias and args.loss != "nt_log":
        raise UsageError("--learn-bias needs --loss nt_log (NT-Xent has no bias)")
    build_loss(args)  # refuse a bad --tau before a run folder is made
    setup = start_run(args, parser, MODEL, default_name=f"{MODEL}-{args.loss}-s{args.seed}")
    device, precision, train = setup.device, setup.precision, setup.dataset.train
    train_idx, val_idx, test_idx = prepare_splits(setup)
    set_seed(args.seed)
    model = ContrastiveModel(build_loss(args), args.proj_dim, audio_frontend=args.audio_frontend,
                             mel_channels=args.mel_channels).to(device)
    optimizer = make_adam(model.parameters(), args.lr)
    early = EarlyStopping(args.patience)
    run = Progress(setup, model, optimizer, early, params=count_parameters(model), loss=args.loss)

    with GracefulStop() as stop:
        for epoch in run.epochs():
            model.train()
            for index in run.batches(train_idx):
                image, audio = train.image[index].to(device), train.audio[index].to(device)
                with autocast(precision, device):
                    loss = model(image, audio)  # pair i is the positive of row/column i; no labels
                check_finite(loss, epoch, run.batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                run.count(loss, len(index))
                if stop.requested:
                    break
            if stop.requested:
                return run.save_and_exit(stop)
            val_loss = mean_contrastive_loss(model, train, val_idx, args.batch_size, device, precision)
            if early.step(val_loss, epoch):  # a strictly lower validation loss (NaN never is)
                run.save_best()
            run.end_epoch(val_loss, tau=model.loss.tau, bias=model.bias)

    # Only now, with the best validation weights back in place, are labels and the test split used.
    best = run.restore_best()
    title = f"contrastive {args.loss} [{setup.dataset.name}]"
    metrics = finish_contrastive_run(run, setup.dataset, train_idx, val_idx, test_idx, best, title)
    print(contrastive_summary(metrics))
    return 0


if __name__ == "__main__":
    run_main(main)
