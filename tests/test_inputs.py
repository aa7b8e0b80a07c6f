"""common/inputs.py and predict.py: a person's own image and recording, made into the models' inputs."""
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from common.data.errors import DataError
from common.inputs import load_audio, load_image, mnist_like, speech_like
from conftest import run_script, train_on_course


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
    assert abs(cy - 13.5) <= 0.6 and abs(cx - 13.5) <= 0.6  # centred by mass
    light = load_image(str(draw_seven(tmp_path / "light.jpg", ink="white", paper="black", mode="L")))
    assert np.abs(light - x).mean() < 0.05  # light on dark: the same digit, not inverted


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


@pytest.fixture(scope="module")
def trained(labelled_course, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    for script, name in (("train_image.py", "img"), ("train_multimodal.py", "mm")):
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
