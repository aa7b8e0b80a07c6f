"""The columns of the results table: one spec gives the value read from metrics.json, the statistic
over seeds, the Markdown cell and the CSV columns. A new column is one entry here."""
from dataclasses import dataclass

from .format import fmt_params, fmt_stat


@dataclass(frozen=True)
class Column:
    """One column of the results table.

    field: the run's value and the row's statistic (mean, std, n over the seeds) of that name;
    source: where metrics.json holds it (a path of keys), times `scale`; digits: decimals shown;
    best: "high" or "low" bolds the best row of a table, None bolds nothing; csv: the stem of its
    CSV columns (<csv>_mean, <csv>_std; None: Markdown only); kind "count" shows a rounded mean
    (and one CSV column), "stat" a mean ± std."""
    name: str
    field: str
    source: tuple
    scale: float = 1.0
    digits: int = 2
    best: str = None
    csv: str = None
    kind: str = "stat"

    def read(self, metrics):
        value = metrics
        for key in self.source:
            value = value.get(key) if isinstance(value, dict) else None
        return value * self.scale if isinstance(value, (int, float)) and not isinstance(value, bool) else value

    def markdown(self, group, bold=False):
        if self.kind == "count":
            return fmt_params(group[self.field])
        text = fmt_stat(group[self.field], self.digits)
        return f"**{text}**" if bold else text

    def csv_headers(self):
        if self.csv is None:
            return []
        return [self.csv] if self.kind == "count" else [f"{self.csv}_mean", f"{self.csv}_std"]


# Before the exam's numbers (test loss and accuracy), then after them, in the order shown.
TEST_COLUMNS = (Column("test loss", "test_loss", ("test", "loss"), digits=4, best="low", csv="test_loss"),
                Column("test accuracy (%)", "test_acc", ("test", "acc"), scale=100.0, digits=2, best="high",
                       csv="test_acc_pct"))
RUN_COLUMNS = (Column("parameters", "params", ("params",), kind="count", csv="params"),
               Column("seconds / epoch", "seconds_per_epoch", ("seconds_per_epoch",), digits=1,
                      csv="seconds_per_epoch"),
               Column("best epoch", "best_epoch", ("best_epoch",), digits=1, csv="best_epoch"),
               Column("epochs run", "epochs_run", ("epochs_run",), digits=1, csv="epochs_run"))
COLUMNS = TEST_COLUMNS + RUN_COLUMNS
STAT_FIELDS = tuple(c.field for c in COLUMNS)
