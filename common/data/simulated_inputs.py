"""A person's own inputs, simulated from test digits and test recordings (seeded), to measure
predict.py on what people actually give it (scripts/own_inputs.py, tests/test_user_inputs.py).

- render_photo: a 28x28 MNIST digit as a phone photo of dark ink on paper: 160-320 pixels, the digit
  40-75% of the frame, paper grey or tinted, a lighting gradient across the sheet, a few degrees of
  rotation, sometimes a thin ruled line or the edge of the page (a darker table) in the frame, blur,
  sensor noise, and JPEG compression.
- laptop_recording: an 8 kHz FSDD recording as a laptop microphone takes it: 44.1 or 48 kHz stereo,
  the speech peaking 20-30 dB below full scale, 0.3-0.8 s of room noise (coloured noise 25-40 dB
  under the speech, not digital silence) before and after and under the word, and a DC offset.
"""
import io
import math

import numpy as np

PHOTO_SIDE = (160, 320)        # pixels, the shorter side of the photo
DIGIT_SHARE = (0.4, 0.75)      # the digit's 20-pixel box as a share of the shorter side
ROTATION = 5.0                 # degrees, either way: a few
JPEG_QUALITY = (75, 95)        # a phone camera saves at 85-95; a messenger app recompresses lower
LAPTOP_RATES = (44100, 48000)
PEAK_DBFS = (-30.0, -20.0)     # the speech's peak
NOISE_BELOW_SPEECH_DB = (25.0, 40.0)  # the room noise's RMS under the speech's RMS
PADDING_SECONDS = (0.3, 0.8)
DC_OFFSET = (0.005, 0.02)      # of full scale, either sign


def render_photo(digit, rng):
    """A uint8 28x28 MNIST digit (white on black) as JPEG bytes of a phone photo of it on paper."""
    from PIL import Image, ImageDraw, ImageFilter
    side = int(rng.integers(PHOTO_SIDE[0], PHOTO_SIDE[1] + 1))
    height, width = side, int(side * rng.uniform(1.0, 1.33))
    if rng.random() < 0.5:
        height, width = width, height
    # the digit's 28x28 frame scaled so that its 20-pixel box is DIGIT_SHARE of the shorter side, rotated
    frame = max(8, round(rng.uniform(*DIGIT_SHARE) * side * 28 / 20))
    ink = Image.fromarray(np.asarray(digit, dtype=np.uint8)).resize((frame, frame), Image.BICUBIC)
    ink = ink.rotate(rng.uniform(-ROTATION, ROTATION), resample=Image.BICUBIC, fillcolor=0)
    alpha = np.zeros((height, width), dtype=np.float32)
    top = int(rng.integers(0, max(1, height - frame + 1)))
    left = int(rng.integers(0, max(1, width - frame + 1)))
    patch = np.asarray(ink, dtype=np.float32)[:height - top, :width - left] / 255.0
    alpha[top:top + patch.shape[0], left:left + patch.shape[1]] = patch
    # the sheet: grey or tinted paper, dark (blue-black or pencil-grey) ink
    paper = rng.uniform(0.62, 0.95) * (1 + rng.uniform(-0.06, 0.06, size=3))
    pen = rng.uniform(0.05, 0.3) * (1 + rng.uniform(-0.3, 0.3, size=3))
    sheet = paper[None, None, :] * (1 - alpha[..., None]) + pen[None, None, :] * alpha[..., None]
    img = Image.fromarray(np.clip(np.round(255 * sheet), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    rows = np.flatnonzero(alpha.max(axis=1) > 0.1)
    if rng.random() < 0.3 and len(rows):  # a thin ruled line above or below the digit
        above, below = rows[0] - 4, height - rows[-1] - 5
        if max(above, below) > 2:
            y = int(rng.integers(1, above)) if above >= below else int(rows[-1] + 4 + rng.integers(0, below))
            tone = tuple(int(255 * v) for v in np.clip(paper * rng.uniform(0.55, 0.8), 0, 1))
            draw.line([(0, y), (width, y)], fill=tone, width=max(1, side // 120))
    if rng.random() < 0.3:  # the edge of the page: a band of darker table along one side, clear of the digit
        cols = np.flatnonzero(alpha.max(axis=0) > 0.1)
        room = {"left": cols[0], "right": width - 1 - cols[-1], "top": rows[0], "bottom": height - 1 - rows[-1]} \
            if len(rows) else {}
        side_name = max(room, key=room.get) if room else None
        if side_name and room[side_name] > 6:
            band = int(rng.integers(3, min(room[side_name] - 2, side // 6) + 1)) if room[side_name] > 5 else 0
            tone = tuple(int(255 * v) for v in np.clip(rng.uniform(0.15, 0.45) * (1 + rng.uniform(-0.2, 0.2, 3)), 0, 1))
            box = {"left": (0, 0, band, height), "right": (width - band, 0, width, height),
                   "top": (0, 0, width, band), "bottom": (0, height - band, width, height)}[side_name]
            draw.rectangle(box, fill=tone)
    # light falling across the sheet: a linear gradient in a random direction, from 55-85% to 100-110%
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = (xx - width / 2) * math.cos(angle) + (yy - height / 2) * math.sin(angle)
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
    light = rng.uniform(0.55, 0.85) + ramp * rng.uniform(0.2, 0.45)
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2) * side / 160))
    pixels = np.asarray(img, dtype=np.float32) / 255.0 * light[..., None]
    pixels += rng.normal(0.0, rng.uniform(0.005, 0.03), size=pixels.shape)
    img = Image.fromarray(np.clip(np.round(255 * pixels), 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1)))
    return buf.getvalue()


def laptop_recording(samples, rng, rate=8000):
    """An FSDD recording (int16 or float samples at `rate`) as a laptop takes it: (rate, int16 [T, 2])."""
    from scipy.signal import lfilter, resample_poly
    x = np.asarray(samples, dtype=np.float64)
    x = x - x.mean()
    out_rate = int(rng.choice(LAPTOP_RATES))
    g = math.gcd(out_rate, rate)
    x = resample_poly(x, out_rate // g, rate // g)
    x *= 10 ** (rng.uniform(*PEAK_DBFS) / 20) / max(float(np.abs(x).max()), 1e-12)
    pad = [int(rng.uniform(*PADDING_SECONDS) * out_rate) for _ in range(2)]
    x = np.concatenate([np.zeros(pad[0]), x, np.zeros(pad[1])])
    speech_rms = float(np.sqrt(np.mean(x[pad[0]:len(x) - pad[1]] ** 2)))
    noise_rms = speech_rms * 10 ** (-rng.uniform(*NOISE_BELOW_SPEECH_DB) / 20)
    channels = []
    for gain in (1.0, rng.uniform(0.8, 1.0)):  # two microphones a few centimetres apart
        room = lfilter([1.0], [1.0, -0.95], rng.normal(size=len(x)))  # a low rumble more than a hiss
        room *= noise_rms / float(np.sqrt(np.mean(room ** 2)))
        channels.append(gain * x + room)
    stereo = np.stack(channels, axis=1) + rng.choice([-1, 1]) * rng.uniform(*DC_OFFSET)
    return out_rate, np.clip(np.round(stereo * 32767), -32768, 32767).astype(np.int16)
