"""common/data/user_inputs.py and predict.py: a person's own image and recording, made into the models' inputs."""
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw

from common.data.errors import DataError
from common.data.user_inputs import load_audio, load_image, mnist_like, speech_like

from conftest import REAL_DATA, ROOT, needs_real, one_line_error, run_cli, run_script, train_on_course


def draw_seven(path, size=(200, 260), ink="black", paper="white", mode="RGB"):
    img = Image.new(mode, size, paper)
    ImageDraw.Draw(img).line([(40, 40), (160, 40), (90, 230)], fill=ink, width=18)
    img.save(path)
    return path


def test_a_dark_on_light_photo_becomes_an_mnist_digit(tmp_path):
    x = load_image(str(draw_seven(tmp_path / "seven.png")))
    assert x.shape == (28, 28) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert x[0].max() == 0 and x[:, 0].max() == 0  # white on black: the border is background
    rows, cols = np.flatnonzero(x.max(1) > 0.1), np.flatnonzero(x.max(0) > 0.1)
    assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 <= 21  # the longer side fits MNIST's 20-pixel box
    mass = x.sum()
    cy, cx = (x.sum(1) * np.arange(28)).sum() / mass, (x.sum(0) * np.arange(28)).sum() / mass
    assert abs(cy - 14) <= 0.6 and abs(cx - 14) <= 0.6  # centred by mass at (14, 14), as MNIST is
    light = load_image(str(draw_seven(tmp_path / "light.jpg", ink="white", paper="black", mode="L")))
    assert np.abs(light - x).mean() < 0.05  # light on dark: the same digit, not inverted


def photo_of(digit, paper=1.0, light=(1.0, 1.0), ruled=False, margin=False, size=(240, 200), quality=None):
    """A large, dark-on-paper copy of a 28x28 light-on-black digit: paper grey `paper`, lit from
    light[0] at the left to light[1] at the right, with a ruled line under the digit and a dark margin
    at the left when asked, saved as JPEG at `quality` when given (returned as an RGB image)."""
    import io
    from PIL import Image
    ink = np.asarray(Image.fromarray(np.round(digit * 255).astype(np.uint8)).resize((150, 150), Image.BICUBIC),
                     dtype=np.float32) / 255.0
    sheet = np.full((size[0], size[1]), paper, np.float32)
    sheet[40:190, 30:180] = paper * (1 - ink) + 0.1 * ink
    if ruled:
        sheet[215:217] = 0.5 * paper
    if margin:
        sheet[:, :12] = 0.2
    sheet *= np.linspace(light[0], light[1], size[1], dtype=np.float32)[None, :]
    img = Image.fromarray(np.round(np.clip(sheet, 0, 1) * 255).astype(np.uint8)).convert("RGB")
    if quality:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=quality)
        img = Image.open(buf)
    return img


def test_the_paper_is_taken_away_whatever_its_grey_light_and_edges():
    """One digit photographed on white paper and on grey paper lit from one side (55% to 100%), with a
    ruled line, a dark page margin and JPEG: the same 28x28 within a small tolerance, and nothing of
    the line or the margin in it."""
    from common.data.user_inputs import greyscale
    from common.data.synthetic import render_digits
    digit = render_digits(np.array([5]), np.random.default_rng(0))[0].astype(np.float32) / 255.0
    white = mnist_like(greyscale(photo_of(digit)))
    for kwargs in ({"paper": 0.7, "light": (0.55, 1.0)}, {"paper": 0.8, "light": (1.0, 0.6), "ruled": True},
                   {"paper": 0.9, "margin": True, "ruled": True, "quality": 80}):
        other = mnist_like(greyscale(photo_of(digit, **kwargs)))
        assert np.abs(other - white).mean() < 0.02 and np.abs(other - white).max() < 0.35, kwargs
        assert other[:3].max() < 0.05 and other[-3:].max() < 0.05 and other[:, :3].max() < 0.05, kwargs


def test_sixteen_bit_and_transparent_images_read_as_their_eight_bit_opaque_twins(tmp_path):
    """A 16-bit grey PNG is scaled, not clipped at 255 (PIL's convert('L') would make it all white);
    black ink on a transparent sheet is ink on white paper, not black on black."""
    eight = load_image(str(draw_seven(tmp_path / "seven.png", mode="L")))
    grey = np.asarray(Image.open(tmp_path / "seven.png"), dtype=np.uint16) * 257  # 255 -> 65535
    Image.fromarray(grey).save(tmp_path / "seven16.png")
    assert Image.open(tmp_path / "seven16.png").mode.startswith("I")
    assert np.abs(load_image(str(tmp_path / "seven16.png")) - eight).max() < 1e-2
    sheet = Image.new("RGBA", (200, 260), (0, 0, 0, 0))  # transparent black, as drawing apps export
    ImageDraw.Draw(sheet).line([(40, 40), (160, 40), (90, 230)], fill=(0, 0, 0, 255), width=18)
    sheet.save(tmp_path / "sheet.png")
    assert np.abs(load_image(str(tmp_path / "sheet.png")) - eight).max() < 1e-2


def test_a_28x28_image_with_a_dark_border_is_fed_as_it_is():
    """MNIST's format already: a noisy test digit keeps every pixel (cropping its "ink" would shrink it);
    the same digit drawn dark on light gets the preprocessing of any photo (inverted, boxed, centred)."""
    g = np.random.default_rng(0)
    digit = np.zeros((28, 28), np.float32)
    digit[6:22, 12:16] = 1.0
    replace = g.random((28, 28)) < 0.85  # the recipe's noisiest p
    noisy = np.where(replace, g.choice([0.0, 0.5, 1.0], (28, 28)), digit).astype(np.float32)
    assert np.array_equal(mnist_like(noisy), noisy)
    drawn = mnist_like(1.0 - digit)
    rows = np.flatnonzero(drawn.max(1) > 0.1)
    assert drawn[0].max() == 0 and rows[-1] - rows[0] + 1 == 20  # light on black, the bar in the 20-pixel box
    for blank in (np.zeros((28, 28), np.float32), np.ones((28, 28), np.float32)):
        with pytest.raises(DataError, match="no ink"):
            mnist_like(blank)


def test_blank_or_unreadable_images_are_one_line(tmp_path):
    Image.new("L", (30, 30), "white").save(tmp_path / "blank.png")
    with pytest.raises(DataError, match="no ink"):
        load_image(str(tmp_path / "blank.png"))
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(DataError, match="cannot read image"):
        load_image(str(tmp_path / "text.png"))
    with pytest.raises(DataError, match="no image file"):
        load_image(str(tmp_path / "missing.png"))
    with pytest.raises(DataError, match="is empty"):
        mnist_like(np.zeros((0, 0), np.float32))


def test_any_wav_becomes_one_centred_standardised_second(tmp_path):
    from scipy.io import wavfile
    rate = 44100
    t = np.arange(int(0.4 * rate)) / rate
    word = 0.5 * np.sin(2 * np.pi * 440 * t)
    stereo = np.concatenate([np.zeros(rate), word, np.zeros(rate // 2)])[:, None] * np.array([[1.0, 0.5]])
    wavfile.write(tmp_path / "stereo.wav", rate, stereo.astype(np.float32))
    x = load_audio(str(tmp_path / "stereo.wav"))
    assert x.shape == (8000,) and x.dtype == np.float32
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-3
    loud = np.flatnonzero(np.abs(x) > 0.5)
    assert 2300 <= loud[0] <= 2500 and 5500 <= loud[-1] <= 5700  # the 0.4 s word (3,200 samples), centred
    wavfile.write(tmp_path / "u8.wav", 8000, (128 + 100 * np.sin(np.arange(4000) / 3)).astype(np.uint8))
    assert load_audio(str(tmp_path / "u8.wav")).shape == (8000,)
    long = np.sin(np.arange(3 * 8000) / 5)  # three seconds of sound: the middle second is kept
    assert speech_like(long, 8000).shape == (8000,)


def test_silent_empty_or_broken_audio_is_one_line(tmp_path):
    from scipy.io import wavfile
    wavfile.write(tmp_path / "silent.wav", 16000, np.zeros(16000, np.int16))
    with pytest.raises(DataError, match="is silent"):
        load_audio(str(tmp_path / "silent.wav"))
    with pytest.raises(DataError, match="holds no samples"):
        speech_like(np.zeros(0, np.int16), 8000)
    (tmp_path / "broken.wav").write_bytes(b"RIFF....WAVEfmt ")
    with pytest.raises(DataError, match="cannot read WAV file"):
        load_audio(str(tmp_path / "broken.wav"))


def write_wav24(path, rate, channels):
    """channels: [samples, C] floats in [-1, 1] -> a 24-bit PCM WAV (scipy writes no 24-bit)."""
    import wave
    ints = np.round(np.clip(channels, -1, 1) * (2 ** 23 - 1)).astype("<i4")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels.shape[1])
        w.setsampwidth(3)
        w.setframerate(rate)
        w.writeframes(ints.view(np.uint8).reshape(-1, 4)[:, :3].tobytes())


@pytest.fixture(scope="module")
def trained(labelled_course, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    for script, name in (("train_image.py", "img"), ("train_audio.py", "aud"), ("train_multimodal.py", "mm")):
        out = train_on_course(script, labelled_course, runs, name=name)
        assert out.returncode == 0, out.stderr
    return runs


def test_predict_a_digit_from_an_image_and_from_a_pair(trained, tmp_path):
    from scipy.io import wavfile
    seven = str(draw_seven(tmp_path / "seven.png"))
    out = run_script(["predict.py", str(trained / "img"), "--image", seven, "--show", str(tmp_path / "seen")])
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"{seven}: ") and "top 3:" in out.stdout
    assert (tmp_path / "seen" / "seven.png").is_file()
    out = run_script(["predict.py", str(trained / "img"), "--image", seven, "--json"])
    row = json.loads(out.stdout)
    assert row["digit"] == row["top3"][0][0] and len(row["top3"]) == 3
    assert sum(q for _, q in row["top3"]) <= 1.0 + 1e-3
    wavfile.write(tmp_path / "voice.wav", 22050, (0.3 * np.sin(np.arange(11025) / 4)).astype(np.float32))
    out = run_script(["predict.py", str(trained / "mm"), "--image", seven, seven, "--audio",
                      str(tmp_path / "voice.wav"), str(tmp_path / "voice.wav"), "--out", str(tmp_path / "p.csv")])
    assert out.returncode == 0, out.stderr
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "image,audio,digit,top3" and len(lines) == 3
    out = run_script(["predict.py", str(trained / "mm"), "--image", seven])
    assert out.returncode == 0 and "no audio given: filled with zeros" in out.stderr


def test_predict_refuses_in_one_line(trained, tmp_path):
    seven = str(draw_seven(tmp_path / "seven.png"))
    (tmp_path / "empty-run").mkdir()
    (tmp_path / "empty-run" / "config.json").write_text(json.dumps({"model": "image", "args": {}}))
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "config.json").write_text(json.dumps({"model": "contrastive", "args": {}}))
    for args, message in [([str(trained / "img"), "--audio", "x.wav"], "image-only run: give --image files only"),
                          ([str(tmp_path / "c"), "--image", seven], "'contrastive' run"),
                          ([str(tmp_path / "empty-run"), "--image", seven], "has no checkpoints/best.pt"),
                          ([str(trained / "img"), "--image", str(tmp_path / "nope.png")], "no image file"),
                          ([str(trained / "mm"), "--image", seven, "--audio", "a.wav", "b.wav"], "pairs:"),
                          ([str(trained / "img")], "give --image")]:
        out = run_script(["predict.py", *args])
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, (args, out.stderr)


def predicted(run, flag, files):
    """predict.py's answers for the files, one {"digit", "top3"} per file."""
    out = run_script(["predict.py", str(run), flag, *map(str, files), "--json"])
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def own_top3(run, view, x):
    """The run's best.pt on x, as predict.py ranks it: [[digit, probability], ...] x 3 per input."""
    import torch

    from common.facts import saved_precision
    from common.nets.models import build_from_config
    from common.runfolder import RunFolder
    from common.training.loop import autocast, load_checkpoint
    folder = RunFolder(str(run))
    config = folder.read_config()
    model = build_from_config(config)
    model.load_state_dict(load_checkpoint(folder.best)["model"])
    with torch.inference_mode(), autocast(saved_precision(config) or "fp32", torch.device("cpu")):
        probs = torch.softmax(model.eval()(x).float(), dim=1)
    top = torch.topk(probs, 3)
    return [[[int(d), float(q)] for d, q in zip(i, v)] for i, v in zip(top.indices, top.values)]


def assert_same_top3(answers, expected, tolerance):
    for answer, want in zip(answers, expected, strict=True):
        assert [d for d, _ in answer["top3"]] == [d for d, _ in want], (answer, want)
        assert all(abs(q - w) <= tolerance for (_, q), (_, w) in zip(answer["top3"], want)), (answer, want)


def test_a_test_digit_saved_as_png_gets_the_runs_own_prediction(trained, labelled_course, tmp_path):
    """Every test image of the run written as a 16-bit PNG: predict.py ranks the digits as the run's
    own forward on the test tensor does, with the same probabilities (to its 4 decimals), and so
    agrees with predictions_test.csv."""
    from common.data.sources import load_dataset
    test = load_dataset("course", str(labelled_course), log=lambda _: None).test
    files = []
    for i, image in enumerate(test.image[:, 0].numpy()):
        files.append(tmp_path / f"test{i}.png")
        Image.fromarray(np.round(image * 65535).astype(np.uint16)).save(files[-1])
    answers = predicted(trained / "img", "--image", files)
    assert_same_top3(answers, own_top3(trained / "img", "image", test.image), tolerance=1e-3)
    own = [int(line.split(",")[1]) for line in (trained / "img/predictions_test.csv").read_text().splitlines()[1:]]
    assert [a["digit"] for a in answers] == own


def test_a_recording_as_44k_stereo_24_bit_gets_the_class_of_its_8k_original(trained, labelled_course, tmp_path):
    """Each test recording written at 8 kHz (float) and as 44.1 kHz stereo 24-bit PCM: predict.py ranks
    the digits the same way for both, with probabilities within a hundredth."""
    from scipy.io import wavfile
    from scipy.signal import resample_poly

    from common.data.sources import load_dataset
    test = load_dataset("course", str(labelled_course), log=lambda _: None).test
    originals, converted = [], []
    for i, wave in enumerate(test.audio[:, 0].numpy().astype(np.float64)):
        wave = 0.9 * wave / np.abs(wave).max()
        originals.append(tmp_path / f"rec{i}-8k.wav")
        wavfile.write(originals[-1], 8000, wave.astype(np.float32))
        up = resample_poly(wave, 441, 80)  # 8 kHz -> 44.1 kHz
        converted.append(tmp_path / f"rec{i}-44k.wav")
        write_wav24(converted[-1], 44100, np.stack([up, 0.8 * up], axis=1))
    assert wavfile.read(converted[0])[1].shape[1] == 2
    # the same second, up to the two resamplers' roll-off near 4 kHz (the course's audio is noise-like)
    assert np.corrcoef(load_audio(str(converted[0])), load_audio(str(originals[0])))[0, 1] > 0.98
    assert_same_top3(predicted(trained / "aud", "--audio", converted),
                     [a["top3"] for a in predicted(trained / "aud", "--audio", originals)], tolerance=1e-2)


def test_the_roundtrip_check_on_a_run(trained, tmp_path):
    """scripts/predict_roundtrip.py: the run's test images as 8-bit PNG through predict.py; it refuses a
    run that is not image-only in one line."""
    out = run_script(["scripts/predict_roundtrip.py", str(trained / "img"), "--n", "20"])
    assert out.returncode == 0, out.stderr
    assert "agrees with predictions_test.csv on 20 / 20" in out.stdout
    out = run_script(["scripts/predict_roundtrip.py", str(trained / "aud")])
    assert out.returncode == 2 and "takes an image-only run" in out.stderr


def test_predict_never_writes_over_an_input_and_replaces_an_output_only_when_asked(trained, tmp_path):
    """--show into the photos' own folder, --out onto the input, an existing CSV (the default name
    too): refused in one line before any work; --force replaces outputs, never inputs; two inputs of
    one name get two figures."""
    photos = tmp_path / "photos"
    photos.mkdir()
    seven = photos / "7.png"
    Image.fromarray(np.pad(np.full((20, 8), 255, np.uint8), 4)).save(seven)
    original = seven.read_bytes()
    out = run_script(["predict.py", str(trained / "img"), "--image", str(seven), "--show", str(photos)])
    assert "is one of the inputs" in one_line_error(out) and seven.read_bytes() == original
    out = run_script(["predict.py", str(trained / "img"), "--image", str(seven), "--out", str(seven), "--force"])
    assert "is one of the inputs" in one_line_error(out) and seven.read_bytes() == original
    csv_file = tmp_path / "mine.csv"
    csv_file.write_text("my notes")
    out = run_script(["predict.py", str(trained / "img"), "--image", str(seven), "--out", str(csv_file)])
    assert "exists; pass --force" in one_line_error(out) and csv_file.read_text() == "my notes"
    assert run_script(["predict.py", str(trained / "img"), "--image", str(seven), "--out", str(csv_file),
                       "--force"]).returncode == 0
    assert csv_file.read_text().startswith("image,audio,digit,top3")
    (tmp_path / "predictions.csv").write_text("kept")  # the default name, in the folder the command runs in
    out = subprocess.run([sys.executable, os.path.join(ROOT, "predict.py"), str(trained / "img"), "--image",
                          str(seven), str(seven)], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 2 and "predictions.csv exists" in out.stderr
    assert (tmp_path / "predictions.csv").read_text() == "kept"
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(seven, other / "7.png")
    shown = tmp_path / "shown"
    assert run_script(["predict.py", str(trained / "img"), "--image", str(seven), str(other / "7.png"), "--json",
                       "--show", str(shown)]).returncode == 0
    assert sorted(p.name for p in shown.iterdir()) == ["7-2.png", "7.png"]


def test_hostile_files_are_one_line_before_any_large_allocation(tmp_path, monkeypatch):
    """A non-finite sample, a header rate of 2^31 - 1 Hz or of 1 Hz, an image beyond the pixel bound (or
    PIL's decompression-bomb limit), a NaN pixel: each one line; float samples near 1e300 are scaled,
    not turned into zeros."""
    from PIL import Image as PILImage
    from scipy.io import wavfile

    import common.data.user_inputs as user_inputs
    tone = np.sin(np.linspace(0, 400, 6000))
    cases = {"nan.wav": (8000, np.where(np.arange(6000) == 100, np.nan, tone).astype(np.float32), "not finite"),
             "fast.wav": (2 ** 31 - 1, (tone * 3000).astype(np.int16), "2,147,483,647 Hz"),
             "slow.wav": (1, (tone * 3000).astype(np.int16), "sampled at 1 Hz")}
    for name, (rate, data, message) in cases.items():
        wavfile.write(tmp_path / name, rate, data)
        with pytest.raises(DataError, match=message):
            load_audio(str(tmp_path / name))
    wavfile.write(tmp_path / "loud.wav", 8000, tone * 1e300)
    loud, plain = load_audio(str(tmp_path / "loud.wav")), speech_like(tone, 8000)
    assert np.abs(loud - plain).max() < 1e-4  # the same recording, not zeros
    PILImage.fromarray(np.pad(np.full((20, 8), 255, np.uint8), 40)).save(tmp_path / "digit.png")
    monkeypatch.setattr(user_inputs, "MAX_PIXELS", 1000)
    with pytest.raises(DataError, match="more than 1,000"):
        load_image(str(tmp_path / "digit.png"))
    monkeypatch.setattr(user_inputs, "MAX_PIXELS", 10 ** 9)
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 1000)  # PIL's own bomb error: > 2 x this
    with pytest.raises(DataError, match="cannot read image"):
        load_image(str(tmp_path / "digit.png"))
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 10 ** 8)
    nan = np.full((28, 28), 0.5, np.float32)
    nan[3, 3] = np.nan
    PILImage.fromarray(nan, mode="F").save(tmp_path / "nan.tiff")
    with pytest.raises(DataError, match="not finite"):
        load_image(str(tmp_path / "nan.tiff"))


def test_a_train_mean_run_whose_data_moved_finds_it_through_data_root(labelled_course, tmp_path):
    """The stand-in of a missing view is the training mean: with the data moved, --data-root (or
    $AVDIGITS_DATA) says where it is now; without it, one line."""
    course = tmp_path / "course"
    shutil.copytree(labelled_course, course)
    assert train_on_course("train_multimodal.py", course, tmp_path / "runs", "--modality-dropout", "0.5",
                           "--modality-dropout-fill", "train_mean", name="mean").returncode == 0
    moved = tmp_path / "moved"
    shutil.move(course, moved)
    Image.fromarray(np.pad(np.full((20, 8), 255, np.uint8), 4)).save(tmp_path / "7.png")
    run = str(tmp_path / "runs" / "mean")
    lost = run_script(["predict.py", run, "--image", str(tmp_path / "7.png"), "--json"])
    assert lost.returncode == 2 and "Traceback" not in lost.stderr
    found = run_script(["predict.py", run, "--image", str(tmp_path / "7.png"), "--json", "--data-root", str(moved)])
    assert found.returncode == 0, found.stderr
    assert "filled with train mean" in found.stderr


def test_a_checkpoint_of_another_model_is_one_line(trained, tmp_path):
    run = tmp_path / "img"
    shutil.copytree(trained / "img", run)
    shutil.copy(trained / "mm" / "checkpoints" / "best.pt", run / "checkpoints" / "best.pt")
    Image.fromarray(np.pad(np.full((20, 8), 255, np.uint8), 4)).save(tmp_path / "7.png")
    out = run_script(["predict.py", str(run), "--image", str(tmp_path / "7.png")])
    assert "does not fit the run's model" in one_line_error(out)


def test_a_wav_too_short_to_hold_a_word_says_so_rather_than_silent(tmp_path):
    """A header whose data chunk claims 10 bytes leaves 5 samples: named as too short, not silent."""
    from scipy.io import wavfile
    wavfile.write(tmp_path / "short.wav", 8000, (np.sin(np.arange(5)) * 3000).astype(np.int16))
    with pytest.raises(DataError, match=r"holds 5 samples \(1 ms\), too short"):
        load_audio(str(tmp_path / "short.wav"))


# ---------------------------------------------------------------- as people take them, on the real data

@pytest.fixture(scope="module")
def real_runs(tmp_path_factory):
    """An image-only run and a lean mel audio-only run (--mel-top-db 40) on the real data, three epochs each."""
    runs = tmp_path_factory.mktemp("real")
    for script, name, flags in (("train_image.py", "img", []),
                                ("train_audio.py", "aud", ["--recipe", "mel-lean", "--recipe", "db40"])):
        out = run_cli([script, "--data", "avdigits", "--data-root", REAL_DATA, "--max-epochs", "3", "--runs-dir",
                       str(runs), "--name", name, *flags], timeout=1200)
        assert out.returncode == 0, out.stderr
    return runs


def own_inputs(run_dir):
    """scripts/own_inputs.py on 200 test digits or recordings: (% right as people give it, % right as
    the data is, % the same answer, n)."""
    out = run_script(["scripts/own_inputs.py", str(run_dir), "--n", "200", "--data-root", REAL_DATA])
    assert out.returncode == 0, out.stderr
    numbers = re.search(r"([\d.]+)% as people give it, ([\d.]+)% as the data is .* the same answer for ([\d.]+)% "
                        r"of (\d+)", out.stdout)
    return (*(float(x) for x in numbers.groups()[:3]), int(numbers.group(4)))


@needs_real
def test_a_phone_photo_of_a_test_digit_gets_the_digits_own_prediction(real_runs):
    """200 MNIST test digits as phone photos (common/data/simulated_inputs.py, seed 0): predict.py gives the
    digit's own answer for at least 95% of them and loses at most 5 points of accuracy."""
    photo, digit, same, n = own_inputs(real_runs / "img")
    assert n == 200 and same >= 95 and photo >= digit - 5


@needs_real
def test_a_laptop_recording_gets_the_recordings_own_prediction(real_runs):
    """200 FSDD test recordings as a laptop takes them (room noise before, after and under the word, a
    DC offset, 20-30 dB below full scale, 44.1/48 kHz stereo): the same answer as the 8 kHz file for at
    least 95% of them, the accuracy at most 2 points apart."""
    laptop, original, same, n = own_inputs(real_runs / "aud")
    assert n == 200 and same >= 95 and abs(laptop - original) <= 2
