"""common/training/lifecycle.py: claiming a run's name, what counts as a failed start, and the resume rules."""
import subprocess
import sys
import time

from common.training.lifecycle import _failed_start, claim_run_name
from conftest import ROOT

HOLD = """
import sys, time
sys.path.insert(0, {root!r})
from common.training.lifecycle import claim_run_name
assert claim_run_name({runs!r}, "r")
print("held", flush=True)
time.sleep(30)
"""


def test_a_claimed_name_is_refused_to_another_process_and_freed_when_it_ends(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD.format(root=ROOT, runs=str(tmp_path))],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        probe = [sys.executable, "-c", f"import sys; sys.path.insert(0, {ROOT!r}); from common.run import "
                                       f"claim_run_name; print(claim_run_name({str(tmp_path)!r}, 'r'), "
                                       f"claim_run_name({str(tmp_path)!r}, 'other'))"]
        assert subprocess.run(probe, capture_output=True, text=True, timeout=60).stdout.split() == ["False", "True"]
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    assert subprocess.run(probe, capture_output=True, text=True, timeout=60).stdout.split() == ["True", "True"]
    assert list(tmp_path.iterdir()) == []  # the runs folder itself gets nothing from a claim


def test_a_failed_start_is_only_what_a_run_writes_before_its_first_checkpoint(tmp_path):
    run = tmp_path / "r"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "split_indices.json").write_text("{}")
    (run / "events.out.tfevents.1.host").write_text("")
    assert _failed_start(str(run))
    (run / "checkpoints" / "last.pt").write_text("x")
    assert not _failed_start(str(run))  # a checkpoint: --resume's to continue, never deleted
    (run / "checkpoints" / "last.pt").unlink()
    (run / "notes.txt").write_text("mine")
    assert not _failed_start(str(run))  # a file the run did not write: never deleted
    assert claim_run_name(str(tmp_path), "r")  # in this process: held, and a second ask is a yes
    assert claim_run_name(str(tmp_path), "r")
