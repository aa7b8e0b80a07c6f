"""Grouping: the runs of one dataset and configuration become one row (a group: statistics over
seeds), rows are ordered and named, and the contrastive rows are split by dataset."""
import json

from ..facts import FUSION_CHOICES, REGIMES
from .columns import STAT_FIELDS
from .contrastive import format_setting
from .read import warn
from .settings import BEYOND_KEYS, RECIPE_KEYS, _beyond_the_exam, is_exam_setup, recipe_name
from .stats import mean_std


def dataset_key(run):
    return (run["dataset"], run["synthetic"], run["fingerprint"], run["limit"])


def model_order(model, fusion):
    if model == "image":
        return (0, 0, "")
    if model == "audio":
        return (1, 0, "")
    if fusion in FUSION_CHOICES:
        return (2, FUSION_CHOICES.index(fusion), "")
    return (2, len(FUSION_CHOICES), str(fusion))


def model_label(model, fusion):
    if model == "multimodal":
        return f"multimodal-{fusion}" if fusion else "multimodal"
    return f"{model}-only"


def group_runs(runs):
    """[(dataset_key, [group, ...]), ...] in report order; a group is a dict of stats over seeds."""
    by_key = {}
    for run in runs:
        key = (dataset_key(run), run["model"], run["fusion"], run["config"])
        by_key.setdefault(key, []).append(run)

    tables = {}
    for (dkey, model, fusion, config), members in by_key.items():
        members.sort(key=lambda r: (not isinstance(r["seed"], int), r["seed"] if isinstance(r["seed"], int) else 0,
                                    str(r["seed"]), r["path"]))
        seeds = [r["seed"] for r in members]
        repeated = sorted({str(s) for s in seeds if seeds.count(s) > 1})
        if repeated:
            warn(f"{model_label(model, fusion)} on {dkey[0]}: seed(s) {', '.join(repeated)} appear in more "
                 f"than one run with the same configuration; each run counts once in n")
        group = {"model": model, "fusion": fusion, "label": model_label(model, fusion), "config": config,
                 "dataset": dkey[0], "synthetic": dkey[1], "fingerprint": dkey[2], "limit": dkey[3],
                 "holdout_speaker": members[0]["holdout_speaker"],
                 "n": len(members), "seeds": seeds, "paths": [r["path"] for r in members],
                 "predictions": [r.get("predictions") for r in members],
                 "recordings": [r.get("recordings") for r in members]}
        for field in STAT_FIELDS:
            group[field] = mean_std(r[field] for r in members)
        group["devices"] = sorted({m["device"] for m in members})
        group["regime_acc"] = {r: mean_std(m["regime_acc"][r] for m in members) for r in REGIMES}
        group["run_acc"] = {"all": [m["test_acc"] for m in members],  # each run's, for the figure's dots
                            **{r: [m["regime_acc"][r] for m in members] for r in REGIMES}}
        ns = {json.dumps(m["regime_n"], sort_keys=True) for m in members}
        group["regime_n"] = members[0]["regime_n"] if len(ns) == 1 else {}
        group["robustness"] = [r["robustness"] for r in members if r["robustness"]]
        tables.setdefault(dkey, []).append(group)

    def table_order(dkey):
        name, synthetic, fingerprint, limit = dkey
        return (synthetic, name, limit is not None, -(limit or 0), str(fingerprint))

    out = []
    for dkey in sorted(tables, key=table_order):
        groups = tables[dkey]
        groups.sort(key=lambda g: (model_order(g["model"], g["fusion"]), repr(g["config"])))
        _disambiguate(groups)
        out.append((dkey, groups))
    return out


def _disambiguate(groups):
    """Name each row's departures from the exam's setup, and give rows that share a model label the
    settings that tell them apart."""
    by_label = {}
    for g in groups:
        by_label.setdefault(g["label"], []).append(g)
    for same in by_label.values():
        names = [name for name, _ in same[0]["config"]]
        differing = [name for i, name in enumerate(names) if len({repr(g["config"][i][1]) for g in same}) > 1]
        for g in same:
            config = dict(g["config"])
            beyond = _beyond_the_exam(config)
            # a beyond-the-exam setting shows where a row departs from the exam (the exam's value goes unsaid)
            shown = [k for k in differing if k not in BEYOND_KEYS or k in beyond]
            shown += [k for k in beyond if k not in shown]
            recipe = recipe_name(config)
            if recipe not in (None, "exam") and any(k in RECIPE_KEYS for k in shown):  # a named bundle: its name
                shown = [k for k in shown if k not in RECIPE_KEYS] + ["recipe"]
                config["recipe"] = recipe
            g["settings"] = ", ".join(f"{k}={format_setting(config[k])}" for k in shown)


def baselines(groups, label):
    """The groups a comparison is made against: the rows with that model label trained as the exam did."""
    return [g for g in groups if g["label"] == label and is_exam_setup(g)]


def contrastive_tables(contrastive):
    """[(dataset_key, [row, ...]), ...] of the contrastive runs, one table per dataset."""
    by_key = {}
    for row in contrastive:
        by_key.setdefault(row.dataset_key(), []).append(row)
    return sorted(by_key.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][3] is not None, str(kv[0][2])))
