"""Collect the metrics.json of finished runs into the study's results table.

Reads every metrics.json below RUNS_DIR (at any depth), groups runs that
differ only in their seed, and prints one row per group: mean and sample
standard deviation (ddof=1) over the seeds, with n, the number of seeds.

Runs are never averaged across data: each table holds one dataset (name,
fingerprint and --limit all equal), and within it a row also holds one
configuration (the flags in config.json beside metrics.json that change the
model or its training: lr, batch size, epochs, patience, validation share,
fusion widths, heads, whether featurizers were initialised from a
checkpoint, the share of labelled pairs, the optimizer recipe, the audio
front-end, the --select rule; common/report/settings.py CONFIG_KEYS has them
all). Image / audio / multimodal runs
with a labelled test split fill the results table; classifier rows trained at
several --label-fraction values also get a label-efficiency table (scratch vs
featurizers from a contrastive checkpoint) and figure. Contrastive
pre-training runs get their own table, one row per run: class-level and
instance-level retrieval and linear-probe accuracy, with a figure of each
against the temperature. Other runs are counted and skipped.

Runs that have a robustness.json (written by evaluate.py) also feed a
robustness section: the area under each accuracy-vs-noise curve and its
difference from late fusion, the fresh-draw accuracy, the accuracy at each
noise level, and the missing-view table; plus one figure per sweep
(accuracy vs noise, mean ± std over seeds, one line per model), written
to the (last) RUNS_DIR unless --figures says otherwise. Rows that differ from
the exam's setup (a --label-fraction, --init-from, --modality-dropout or
--audio-frontend mel) sit beside the exam's rows; the paired comparisons are
made against the concat and late rows trained as the exam did.

Examples:
  python report.py runs/study
  python report.py results/study results/beyond --figures results/beyond
  python report.py runs/study --out runs/study/results.md
  python report.py runs/study --format csv --out results.csv
"""
import argparse
import os
import sys

from common.io import output_file_problem, save_figure, write_output
from common.report.figures import accuracy_figure, write_figures  # noqa: F401  (accuracy_figure: for callers)
from common.report.format import describe_skipped
from common.report.fusionmap import fusion_map_figure, fusion_map_markdown, grid_runs
from common.report.group import contrastive_tables, group_runs
from common.report.markdown import markdown
from common.report.read import ReportError, read_all, read_floors, read_probes, read_runs  # noqa: F401
from common.report.stats import holm, mcnemar_exact, mcnemar_one_sided, mean_ci, mean_std  # noqa: F401
from common.report.tables_csv import csv_text
from common.runfolder import init_source  # noqa: F401


def build_report(runs_dirs, fmt, figures_dir=None, seeds=None):
    """The report of every run below runs_dirs (seeds: only the runs of these seeds; None: all)."""
    runs_dirs = [runs_dirs] if isinstance(runs_dirs, str) else list(runs_dirs)
    where = ", ".join(runs_dirs)
    runs, contrastive, skipped = read_all(runs_dirs)
    if seeds is not None:
        left_out = len(runs) + len(contrastive)
        runs = [r for r in runs if r["seed"] in seeds]
        contrastive = [r for r in contrastive if r.seed in seeds]
        left_out -= len(runs) + len(contrastive)
        if left_out:
            print(f"note: --seeds {' '.join(map(str, seeds))}: left out {left_out} run(s) of other seeds",
                  file=sys.stderr)
    if skipped:
        print(f"note: skipped {sum(skipped.values())} run(s): {describe_skipped(skipped)}", file=sys.stderr)
    probes = read_probes(runs_dirs)
    if not runs and not contrastive and not probes:
        found = sum(skipped.values())
        raise ReportError(f"no usable metrics.json under {where}"
                          + (f" ({found} found, all skipped)" if found else " (none found)"))
    tables, sweeps = group_runs(runs), contrastive_tables(contrastive)
    if fmt == "csv" and contrastive:
        print(f"note: the CSV holds the classifier runs only; {len(contrastive)} contrastive run(s) are in the "
              "Markdown report", file=sys.stderr)
    grid = grid_runs(runs)  # the runs evaluated with --grid: the fusion map
    if figures_dir is not None:
        try:
            for path in write_figures(tables, sweeps, figures_dir, probes):
                print(f"wrote {path}", file=sys.stderr)
            fig = fusion_map_figure(grid, "the fusion map on unheard voices (mean over folds and seeds)")
            if fig is not None:
                path = os.path.join(figures_dir, "fusion_map.png")
                save_figure(fig, path)
                print(f"wrote {path}", file=sys.stderr)
        except OSError as e:
            raise ReportError(f"cannot write figures to {figures_dir}: {e.strerror or e}") from None
    if fmt == "md":
        text = markdown(tables, "`, `".join(runs_dirs), len(runs) + len(contrastive), skipped, sweeps, probes,
                        read_floors(runs_dirs))
        return text + "\n".join(fusion_map_markdown(grid)) + "\n" if grid else text
    return csv_text(tables)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs_dirs", nargs="+", metavar="RUNS_DIR",
                        help="folder(s) searched recursively for metrics.json; runs of several folders share "
                             "the tables (e.g. results/study results/beyond)")
    parser.add_argument("--format", choices=("md", "csv"), default="md",
                        help="md: Markdown tables with mean ± std (default); csv: one row per group, plain numbers")
    parser.add_argument("--out", metavar="FILE", help="write the report to FILE (atomically) instead of stdout")
    parser.add_argument("--figures", metavar="DIR", default=None,
                        help="folder for the figures (default: the last RUNS_DIR)")
    parser.add_argument("--no-figures", action="store_true", help="write no figures")
    parser.add_argument("--seeds", type=int, nargs="+", metavar="SEED",
                        help="only the runs of these seeds (default: every seed), e.g. to read seed 0 of a study "
                             "while later seeds land")
    args = parser.parse_args(argv)
    if args.out:
        problem = output_file_problem(args.out)
        if problem:
            print(f"error: --out {args.out}: {problem}", file=sys.stderr)
            return 2
    try:
        text = build_report(args.runs_dirs, args.format,
                            None if args.no_figures else (args.figures or args.runs_dirs[-1]), args.seeds)
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return write_output(text, args.out)


if __name__ == "__main__":
    sys.exit(main())
