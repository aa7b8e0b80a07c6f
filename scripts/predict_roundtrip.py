"""Does predict.py see a test digit as the run did? The first N test images of an image-only run,
written as ordinary 8-bit greyscale PNG files, go through predict.py; its digits are compared
with the run's own predictions_test.csv (its forward on the test tensors).

  python scripts/predict_roundtrip.py runs/image-s0 --n 200

Prints the agreement and the ids that disagree; exit 1 if any does. The PNG files are written to
a temporary folder and removed.
"""
import argparse
import csv
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from common.argtypes import positive_int  # noqa: E402
from common.training.cli import UsageError, run_main  # noqa: E402
from common.data.sources import dataset_from_args  # noqa: E402
from common.runfolder import RecordError, RunFolder, saved_data_args  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished image-only run (train_image.py)")
    p.add_argument("--n", type=positive_int, default=200, help="how many test images, from the first")
    p.add_argument("--data-root", default=None, help="where the raw data lives now (default: the run's)")
    args = p.parse_args()
    folder = RunFolder(args.run_dir)
    try:
        config = folder.read_config()
    except RecordError as e:
        raise UsageError(str(e)) from None
    if config.get("model") != "image":
        raise UsageError(f"{args.run_dir} is a {config.get('model')!r} run; this check takes an image-only run")
    own_path = os.path.join(args.run_dir, "predictions_test.csv")
    if not os.path.exists(own_path):
        raise UsageError(f"{args.run_dir} has no predictions_test.csv: it did not finish")
    with open(own_path) as f:
        own = {int(r["id"]): int(r["digit"]) for r in csv.DictReader(f)}
    test = dataset_from_args(saved_data_args(config, args.data_root), log=lambda _: None).test
    ids = list(range(min(args.n, len(test), len(own))))  # a --limit run predicted its first pairs only
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i in ids:
            files.append(os.path.join(tmp, f"test{i}.png"))
            Image.fromarray(np.round(test.image[i, 0].numpy() * 255).astype(np.uint8)).save(files[-1])
        out_csv = os.path.join(tmp, "predicted.csv")
        done = subprocess.run([sys.executable, os.path.join(ROOT, "predict.py"), args.run_dir, "--image", *files,
                               "--out", out_csv], capture_output=True, text=True)
        if done.returncode != 0:
            said = done.stderr.strip().splitlines()
            raise UsageError(f"predict.py failed: {said[-1] if said else f'exit code {done.returncode}'}")
        with open(out_csv) as f:
            predicted = [int(r["digit"]) for r in csv.DictReader(f)]
    wrong = [i for i, digit in zip(ids, predicted, strict=True) if digit != own[i]]
    print(f"{args.run_dir}: predict.py on {len(ids)} test images saved as 8-bit PNG agrees with "
          f"predictions_test.csv on {len(ids) - len(wrong)} / {len(ids)}"
          + (f"; differs on ids {', '.join(map(str, wrong))}" if wrong else ""))
    return 1 if wrong else 0


if __name__ == "__main__":
    run_main(main)
