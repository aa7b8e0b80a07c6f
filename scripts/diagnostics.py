"""A run's training curves and --log-diagnostics measurements as CSV: one row per epoch, or with
--steps one row per traced step of the first epoch.

Reads the TensorBoard events of RUN_DIR (what the training script logged: loss/train, loss/val,
acc/val, lr, and every diag/* scalar of common/training/diagnostics.py; with --steps its diag_step/* trace)
and writes them side by side, so that they can be kept under results/ and read without
TensorBoard. A run trained without --log-diagnostics gives its curves alone.

With --figure, several runs side by side instead: one panel per tag (--tags), one line per run.

  python scripts/diagnostics.py runs/diag/multimodal-attention-tokens-s0
  python scripts/diagnostics.py RUN_DIR --steps --out results/diagnosis/NAME-steps.csv
  python scripts/diagnostics.py RUN_A RUN_B --steps --figure first-steps.png \
      --tags diag_step/dead_relu/head.1 diag_step/grad_norm/audio_featurizer
"""
import argparse
import csv
import glob
import io
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common.io import output_file_problem, write_output  # noqa: E402

CURVES = ("loss/train", "loss/val", "acc/val", "lr")  # first, in this order; the diag/* tags follow, sorted


def scalar_table(run_dir, steps=False):
    """(tags, {x: {tag: value}}) of every scalar the run logged per epoch (x: the epoch), or with
    steps of its first-steps trace (x: the step); the last value where one was logged twice."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    if not glob.glob(os.path.join(run_dir, "events.out.tfevents.*")):
        raise FileNotFoundError(f"{run_dir}: no TensorBoard events (events.out.tfevents.*)")
    events = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    events.Reload()
    found = events.Tags()["scalars"]
    if steps and os.path.isdir(os.path.join(run_dir, "diag_steps")):  # the trace's own folder (old runs: here)
        events = EventAccumulator(os.path.join(run_dir, "diag_steps"), size_guidance={"scalars": 0})
        events.Reload()
        found = events.Tags()["scalars"]
    if steps:
        tags = sorted(t for t in found if t.startswith("diag_step/"))
        if not tags:
            raise FileNotFoundError(f"{run_dir}: no first-steps trace (diag_step/*): train with --log-diagnostics")
    else:
        tags = [t for t in CURVES if t in found] + sorted(t for t in found if t.startswith("diag/"))
    rows = {}
    for tag in tags:
        for event in events.Scalars(tag):
            rows.setdefault(event.step, {})[tag] = event.value
    return tags, rows


def to_csv(tags, rows, x="epoch"):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([x] + tags)
    for epoch in sorted(rows):
        writer.writerow([epoch] + [f"{rows[epoch][t]:.6g}" if t in rows[epoch] else "" for t in tags])
    return out.getvalue()


def figure(tables, tags, x):
    """One panel per tag (gradient norms on a log axis), one line per run ({run label: (tags, rows)})."""
    from common.figures import plt
    fig, axes = plt.subplots(1, len(tags), figsize=(4.2 * len(tags), 3.2), squeeze=False)
    for ax, tag in zip(axes[0], tags):
        for label, (_, rows) in tables.items():
            xs = [k for k in sorted(rows) if tag in rows[k]]
            ax.plot(xs, [rows[k][tag] for k in xs], label=label, linewidth=1.2)
        if "grad_norm" in tag:  # norms that collapse by orders of magnitude
            ax.set_yscale("log")
        ax.set_title(tag, fontsize=9)
        ax.set_xlabel(x)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    return fig


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                        help="a run folder with TensorBoard events (several with --figure)")
    parser.add_argument("--steps", action="store_true", help="the first steps' trace (diag_step/*), one row a step")
    parser.add_argument("--out", metavar="FILE", help="write the CSV to FILE (atomically) instead of stdout")
    parser.add_argument("--figure", metavar="PNG", help="draw --tags of every run into PNG instead of a CSV")
    parser.add_argument("--tags", nargs="+", default=None, metavar="TAG", help="with --figure: the scalars to draw")
    args = parser.parse_args(argv)
    target = args.figure or args.out
    if target and output_file_problem(target):
        print(f"error: {'--figure' if args.figure else '--out'} {target}: {output_file_problem(target)}",
              file=sys.stderr)
        return 2
    if args.figure and not args.tags:
        print("error: --figure needs --tags (the scalars to draw)", file=sys.stderr)
        return 2
    if not args.figure and len(args.run_dirs) > 1:
        print("error: one RUN_DIR for a CSV (several only with --figure)", file=sys.stderr)
        return 2
    x = "step" if args.steps else "epoch"
    try:
        tables = {os.path.basename(os.path.normpath(d)): scalar_table(d, args.steps) for d in args.run_dirs}
        for name, (tags, _) in tables.items():
            missing = [t for t in args.tags or () if t not in tags]
            if args.figure and missing:
                raise FileNotFoundError(f"{name}: no scalar {', '.join(missing)}")
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.figure:
        from common.io import save_figure
        save_figure(figure(tables, args.tags, x), args.figure)
        print(f"wrote {args.figure}", file=sys.stderr)
        return 0
    return write_output(to_csv(*tables[os.path.basename(os.path.normpath(args.run_dirs[0]))], x=x), args.out)


if __name__ == "__main__":
    sys.exit(main())
