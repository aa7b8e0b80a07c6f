"""Rendering: the CSV of the results table, one row per group, plain numbers; its columns come from
the same column spec as the Markdown table."""
import csv
import io

from ..facts import REGIMES
from .columns import COLUMNS
from .format import csv_number
from .settings import CSV_CONFIG_KEYS

CSV_COLUMNS = (["dataset", "synthetic", "fingerprint", "limit", "model", "fusion", "label", "settings", "n",
                "seeds"]
               + [h for c in COLUMNS for h in c.csv_headers()]
               + [f"acc_{r}_pct_{s}" for r in REGIMES for s in ("mean", "std")]
               + list(CSV_CONFIG_KEYS))


def csv_text(tables):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for dkey, groups in tables:
        for g in groups:
            def pair(stat):
                mean, std, _ = stat
                return [csv_number(mean), csv_number(std)]
            row = [g["dataset"], g["synthetic"], g["fingerprint"] or "", "" if g["limit"] is None else g["limit"],
                   g["model"], g["fusion"] or "", g["label"], g["settings"], g["n"],
                   " ".join(str(s) for s in g["seeds"])]
            for c in COLUMNS:
                if c.csv is None:
                    continue
                if c.kind == "count":
                    row.append("" if g[c.field][0] is None else round(g[c.field][0]))
                else:
                    row += pair(g[c.field])
            for r in REGIMES:
                row += pair(g["regime_acc"][r])
            config = dict(g["config"])
            row += ["" if config[k] is None else config[k] for k in CSV_CONFIG_KEYS]
            w.writerow(row)
    return buf.getvalue()
