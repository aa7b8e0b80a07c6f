"""The docs keep the shape the project set for them (README: at most 200 lines, the two set-up commands
in its first 40, a glance table of at most 10 rows with the trivial floor; docs/RESULTS.md: at most 400
lines; .ci/run runs the README's test command), and RESULTS' fusion-map tables are numbers the report
prints on the kept runs."""
import itertools
import os
import re

import pytest

import report
from conftest import ROOT


def read(*path):
    with open(os.path.join(ROOT, *path), encoding="utf-8") as f:
        return f.read()


def test_the_readme_opens_with_its_two_set_up_commands_and_a_short_glance_table():
    lines = read("README.md").splitlines()
    assert len(lines) <= 200
    set_up = [line for line in lines[:40] if line.startswith("python3 -m venv .venv")]
    assert len(set_up) == 2 and set_up[0].endswith("python train_multimodal.py --fusion concat")
    test_command = set_up[1].rsplit("&& ", 1)[1]
    assert test_command == "python -m pytest -q" and test_command in read(".ci", "run").splitlines()
    header = lines.index("| what | test accuracy (%) |", lines.index("## Results at a glance"))
    table = list(itertools.takewhile(lambda line: line.startswith("|"), lines[header + 2:]))  # past the rule
    assert 0 < len(table) <= 10
    assert any("logistic regression on the noisy pixels" in row for row in table)  # the trivial floor


def test_results_md_stays_within_400_lines():
    assert len(read("docs", "RESULTS.md").splitlines()) <= 400


def results_section(title):
    """One section of docs/RESULTS.md, from its heading to the next."""
    return read("docs", "RESULTS.md").split(f"\n## {title}\n")[1].split("\n## ")[0]


def numbers_not_printed(section, printed):
    """The numbers in `section`'s table rows (a "−" read as "-", a leading "+" dropped) that `printed`
    never shows."""
    def numbers(text):
        return [n.replace("\u2212", "-").lstrip("+") for n in re.findall(r"[\u2212+-]?\d+\.\d+", text)]
    shown = set(numbers(printed))
    rows = [line for line in section.splitlines() if line.startswith("|") and not set(line) <= set("|-: ")]
    return [n for row in rows for n in numbers(row) if n not in shown]


@pytest.mark.slow  # reads every kept fusion-map run: about 10 s
def test_results_fusion_map_tables_are_numbers_the_report_prints(capsys):
    """Every number of the tables of RESULTS' "When fusion helps, on an unheard voice" is printed by the
    report command that section gives (run on the kept results/fusionmap), so a table copied by hand
    cannot drift from the files; a number changed in the copy is caught."""
    section = results_section("When fusion helps, on an unheard voice")
    argv = re.search(r"python report\.py results/fusionmap([^#\n]*)", section).group(1).split()
    if "--figures" in argv:
        del argv[argv.index("--figures"):argv.index("--figures") + 2]
    code = report.main([os.path.join(ROOT, "results", "fusionmap"), *argv, "--no-figures"])
    printed = capsys.readouterr().out.split("## The fusion map on unheard voices")[1]
    assert code == 0 and numbers_not_printed(section, printed) == []
    first = re.search(r"\| (\d+\.\d+) \|", section).group(1)
    assert numbers_not_printed(section.replace(f"| {first} |", "| 99.99 |", 1), printed) == ["99.99"]
