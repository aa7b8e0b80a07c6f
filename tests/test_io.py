"""common/io.py: atomic writes refuse symlinks and special files."""
import os

import pytest

from conftest import run_cli


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
