"""common/training/init_from.py (--init-from): featurizers from another run's checkpoint."""
import shutil

import torch

from conftest import train_named


def test_init_from_a_last_checkpoint(finished, labelled_course, tmp_path):
    out = train_named("train_multimodal.py", labelled_course, tmp_path, "mm", "--max-epochs", "1",
                "--init-from", str(finished / "img" / "checkpoints" / "last.pt"))
    assert out.returncode == 0, out.stderr
    assert "initialised the image featurizer(s)" in out.stdout
    # an older last.pt without `kind`: the run's config.json says what it holds
    old = tmp_path / "old" / "checkpoints"
    old.mkdir(parents=True)
    ckpt = torch.load(finished / "img" / "checkpoints" / "last.pt", weights_only=True)
    del ckpt["kind"]
    torch.save(ckpt, old / "last.pt")
    shutil.copy(finished / "img" / "config.json", tmp_path / "old" / "config.json")
    out = train_named("train_multimodal.py", labelled_course, tmp_path, "mm2", "--max-epochs", "1",
                "--init-from", str(old / "last.pt"))
    assert out.returncode == 0, out.stderr
