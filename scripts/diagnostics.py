"""A run's training curves and --log-diagnostics measurements as CSV: one row per epoch, or with
--steps one row per traced step of the first epoch.

Reads the TensorBoard events of RUN_DIR (what the training script logged: loss/train, loss/val,
acc/val, lr, and every diag/* scalar of common/diagnostics.py; with --steps its diag_step/* trace)
and writes them side by side, so that they can be kept under results/ and read without
TensorBoard. A run trained without --log-diagnostics gives its curves alone.

  python scripts/diagnostics.py runs/diag/multimodal-attention-tokens-s0
  python scripts/diagnostics.py RUN_DIR --steps --out results/diagnosis/NAME-steps.csv
"""
import argparse
import csv
import glob
import io
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common.io import output_file_problem, save_text  # noqa: E402

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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder with TensorBoard events")
    parser.add_argument("--steps", action="store_true", help="the first steps' trace (diag_step/*), one row a step")
    parser.add_argument("--out", metavar="FILE", help="write the CSV to FILE (atomically) instead of stdout")
    args = parser.parse_args(argv)
    if args.out and output_file_problem(args.out):
        print(f"error: --out {args.out}: {output_file_problem(args.out)}", file=sys.stderr)
        return 2
    try:
        text = to_csv(*scalar_table(args.run_dir, args.steps), x="step" if args.steps else "epoch")
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.out:
        save_text(text, args.out)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
