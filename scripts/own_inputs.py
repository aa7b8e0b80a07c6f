"""Your own photos and voice, as people take them: how much does predict.py lose on them?

  python scripts/own_inputs.py RUN_DIR --n 200 --data-root ../shared/data

The first N MNIST test digits become phone photos of ink on paper, and the first N of the run's test
recordings become laptop recordings (common/data/simulated_inputs.py, seeded by --seed). predict.py
reads each input twice: as people give it (the photo, the 44.1/48 kHz stereo recording) and as
the data is (the digit in MNIST's 28x28 format, the 8 kHz WAV as FSDD has it). Printed for each view
the run takes: the accuracy of both, the points lost, and how often the two agree. A multimodal run
is measured on each view alone (the other filled as predict.py fills a missing view) and on pairs
of a photo and a recording of the same digit.

--keep DIR writes the inputs to DIR (photos/, digits/, laptop/, recordings/) to look at, or to feed
predict.py --show; otherwise they go to a temporary folder.
"""
import argparse
import csv
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image
from scipy.io import wavfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from common.argtypes import positive_int  # noqa: E402
from common.data.fsdd import write_wav  # noqa: E402
from common.data.simulated_inputs import laptop_recording, render_photo  # noqa: E402
from common.data.sources import load_raw_sources, resolve_data_root  # noqa: E402
from common.io import output_dir_problem  # noqa: E402
from common.runfolder import RecordError, RunFolder  # noqa: E402
from common.training.cli import UsageError, run_main  # noqa: E402

VIEWS = {"image": ("image",), "audio": ("audio",), "multimodal": ("image", "audio")}


def make_inputs(raw_test, n, seed, folder):
    """Write the photos and digits, laptop recordings and 8 kHz originals of the first n test items
    to folder; returns {view: (labels, as people give it, as the data is)}."""
    rng = np.random.default_rng(seed)
    for sub in ("photos", "digits", "laptop", "recordings"):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    photos, digits = [], []
    for i in range(min(n, len(raw_test.images))):
        label = int(raw_test.image_labels[i])
        photos.append(os.path.join(folder, "photos", f"{i:04d}_{label}.jpg"))
        with open(photos[-1], "wb") as f:
            f.write(render_photo(raw_test.images[i], rng))
        digits.append(os.path.join(folder, "digits", f"{i:04d}_{label}.png"))
        Image.fromarray(raw_test.images[i]).save(digits[-1])
    def take_first(i):  # digit_speaker_take: take 0 of every digit and speaker, then take 1, ...
        digit, speaker, take = raw_test.recording_names[i].split("_")
        return int(take), speaker, int(digit)
    order = sorted(range(len(raw_test.recordings)), key=take_first)[:n]
    laptop, originals = [], []
    for i in order:
        name = raw_test.recording_names[i]
        originals.append(os.path.join(folder, "recordings", f"{name}.wav"))
        write_wav(originals[-1], raw_test.recordings[i])
        rate, stereo = laptop_recording(raw_test.recordings[i], rng)
        laptop.append(os.path.join(folder, "laptop", f"{name}.wav"))
        wavfile.write(laptop[-1], rate, stereo)
    return {"image": ([int(raw_test.image_labels[i]) for i in range(len(photos))], photos, digits),
            "audio": ([int(raw_test.recording_labels[i]) for i in order], laptop, originals)}


def predict(run_dir, flags, out_csv):
    done = subprocess.run([sys.executable, os.path.join(ROOT, "predict.py"), run_dir, *flags, "--out", out_csv],
                          capture_output=True, text=True)
    if done.returncode != 0:
        said = done.stderr.strip().splitlines()
        raise UsageError(f"predict.py failed: {said[-1] if said else f'exit code {done.returncode}'}")
    with open(out_csv) as f:
        return [int(r["digit"]) for r in csv.DictReader(f)]


def line(what, labels, own, plain):
    acc_own = 100 * np.mean(np.array(own) == labels)
    acc_plain = 100 * np.mean(np.array(plain) == labels)
    agree = 100 * np.mean(np.array(own) == np.array(plain))
    return (f"{what}: {acc_own:.1f}% as people give it, {acc_plain:.1f}% as the data is "
            f"({acc_own - acc_plain:+.1f} points), the same answer for {agree:.1f}% of {len(labels)}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished image, audio or multimodal run")
    p.add_argument("--n", type=positive_int, default=200, help="how many test digits and recordings, from the first")
    p.add_argument("--seed", type=int, default=0, help="seeds the photos' and recordings' rendering")
    p.add_argument("--data-root", default=None, help="where MNIST and FSDD live (default: $AVDIGITS_DATA, data/)")
    p.add_argument("--keep", metavar="DIR", help="write the inputs to DIR instead of a temporary folder")
    args = p.parse_args()
    try:
        config = RunFolder(args.run_dir).read_config()
    except RecordError as e:
        raise UsageError(f"{args.run_dir} is not a run folder: {e}") from None
    kind = config.get("model")
    if kind not in VIEWS:
        raise UsageError(f"{args.run_dir} is a {kind!r} run; this check takes an image, audio or multimodal run")
    if args.keep and output_dir_problem(args.keep):
        raise UsageError(f"--keep {args.keep}: {output_dir_problem(args.keep)}")
    raw = load_raw_sources("avdigits", resolve_data_root(args.data_root),
                           holdout_speaker=config["args"].get("holdout_speaker"))
    with tempfile.TemporaryDirectory() as tmp:
        inputs = make_inputs(raw.test, args.n, args.seed, args.keep or tmp)
        print(f"{args.run_dir} on {args.n} simulated photos and laptop recordings (seed {args.seed}):")
        answers = {}
        for view in VIEWS[kind]:
            labels, own, plain = inputs[view]
            answers[view] = [predict(args.run_dir, [f"--{view}", *files], os.path.join(tmp, f"{view}-{form}.csv"))
                             for form, files in (("own", own), ("plain", plain))]
            print("  " + line(f"{view}{' alone' if kind == 'multimodal' else ''}", labels, *answers[view]))
        if kind == "multimodal":  # pairs of one digit: each recording with the first unused photo of its digit
            image_labels, photos, digits = inputs["image"]
            audio_labels, laptop, recordings = inputs["audio"]
            unused = {d: [i for i, label in enumerate(image_labels) if label == d] for d in range(10)}
            pairs = [(unused[d].pop(0), j) for j, d in enumerate(audio_labels) if unused[d]]
            own = predict(args.run_dir, ["--image", *(photos[i] for i, _ in pairs), "--audio",
                                         *(laptop[j] for _, j in pairs)], os.path.join(tmp, "pairs-own.csv"))
            plain = predict(args.run_dir, ["--image", *(digits[i] for i, _ in pairs), "--audio",
                                           *(recordings[j] for _, j in pairs)], os.path.join(tmp, "pairs-plain.csv"))
            print("  " + line("pairs", [audio_labels[j] for _, j in pairs], own, plain))
    return 0


if __name__ == "__main__":
    run_main(main)
