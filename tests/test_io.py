"""common/io.py: atomic writes refuse symlinks and special files."""
import os

import pytest

from conftest import SMALL_SYNTHETIC, run_cli, run_script, train_on_course

FAST = ["--batch-size", "16", "--num-threads", "1", "--precision", "fp32"]


def train_named(script, course, runs_dir, name, *extra):
    return train_on_course(script, course, runs_dir, "--precision", "fp32", *extra, name=name, max_epochs=None)


@pytest.fixture(scope="module")
def finished(labelled_course, tmp_path_factory):
    """A finished multimodal run and a finished image run, shared by the resume cases."""
    runs = tmp_path_factory.mktemp("runs")
    assert train_named("train_multimodal.py", labelled_course, runs, "mm", "--max-epochs", "1").returncode == 0
    assert train_named("train_image.py", labelled_course, runs, "img", "--max-epochs", "1").returncode == 0
    return runs


SYNTH_TRAIN = [*SMALL_SYNTHETIC, "--max-epochs", "1", *FAST]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A finished image run on the small synthetic set, with a robustness.json of its fresh draw."""
    runs = tmp_path_factory.mktemp("evaluated")
    assert run_script(["train_image.py", *SYNTH_TRAIN, "--runs-dir", str(runs), "--name", "img-s0"]).returncode == 0
    out = run_script(["evaluate.py", str(runs / "img-s0"), "--sweeps", "fresh", "--num-threads", "1"])
    assert out.returncode == 0, out.stderr
    return runs / "img-s0"


def test_3_atomic_writes_refuse_symlinks_and_special_files(evaluated, tmp_path):
    target = tmp_path / "target.md"
    target.write_text("mine")
    link = tmp_path / "link.md"
    link.symlink_to(target)
    for out_path, message in ((str(link), "is a symbolic link"), ("/dev/full", "not a regular file")):
        out = run_cli(["report.py", str(evaluated.parent), "--out", out_path, "--no-figures"])
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr
    assert link.is_symlink() and target.read_text() == "mine" and os.path.exists("/dev/full")
    from common.io import OutputError, save_text
    with pytest.raises(OutputError):
        save_text("x", str(link))
