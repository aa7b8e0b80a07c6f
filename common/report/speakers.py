"""Unseen voices: the runs of the held-out-speaker builds (--holdout-speaker), one column per
speaker left out, beside the same rows trained on FSDD's own split by take (test speakers = training
speakers). Each held-out build is a dataset of its own (its own table above); this gathers them."""
from .format import fmt_stat, row_name
from .settings import held_out_name
from .stats import mean_std


def unseen_voices_markdown(tables):
    folds = [(dkey, g) for dkey, groups in tables for g in groups if g["holdout_speaker"]]
    if not folds:
        return []
    speakers = sorted({g["holdout_speaker"] for _, g in folds})
    rows = {}  # row name -> {speaker: group}, in the order the rows first appear
    for _, g in folds:
        rows.setdefault(row_name(g), {})[g["holdout_speaker"]] = g
    fold_datasets = {g["dataset"] for _, g in folds}
    known = {}  # the same rows on the split by take of the same source (the first such table)
    for _, groups in tables:
        for g in groups:
            if not g["holdout_speaker"] and any(held_out_name(g["dataset"], s) in fold_datasets for s in speakers):
                known.setdefault(row_name(g), g)
    lines = ["", "## Unseen voices", "",
             "Test accuracy (%) with one speaker's every recording left out of training and the test pairs made "
             "from that speaker alone (--holdout-speaker; mean ± std over seeds where a fold has more than one), "
             "the mean over the speakers left out, and the same row on FSDD's own split by take, whose test "
             "speakers are the training speakers (–: not in these runs).", "",
             "| model | " + " | ".join(speakers) + " | mean over speakers | known speakers |",
             "|---|" + "---:|" * (len(speakers) + 2)]
    for name, by_speaker in rows.items():
        cells = [fmt_stat(by_speaker[s]["test_acc"], 2) if s in by_speaker else "–" for s in speakers]
        over = mean_std(by_speaker[s]["test_acc"][0] for s in speakers if s in by_speaker)
        ref = known.get(name)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {fmt_stat(over, 2)} (n={over[2]}) | "
                     + (fmt_stat(ref["test_acc"], 2) if ref else "–") + " |")
    return lines
