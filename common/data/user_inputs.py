"""A person's own inputs, made into what the models were trained on (predict.py).

Images (any size and mode, PNG/JPEG/...): greyscale in [0, 1] (16-bit greys scaled, not clipped;
a transparent background laid on white paper). A photo's digit is found as a person sees it: the
sheet's own brightness is estimated (a grey closing over windows a quarter of the picture wide,
which follows a lighting gradient and fills every stroke in with paper) and the ink is what is darker
than its paper, as a share of it (light ink on a dark board: lighter); a threshold from the ink's
own histogram (Otsu's) marks the strokes; the largest ink component and its neighbours are the
digit, and ink touching the frame's edge (a page's margin, a ruled line) is left out. The digit is
then cropped, scaled so its longer side is 20 pixels and placed in a 28x28 frame with its centre of
mass at the centre: MNIST's own preprocessing (a 20x20 box, centred by mass in 28x28). A 28x28 image
with a dark border is taken to be in MNIST's format already (a test digit saved as PNG, say) and is
fed as it is: cropping a noisy test digit to its "ink" would shrink it. A 28x28 image with a light
border (a small drawing, dark on paper) gets the preprocessing like any photo.

Audio (WAV of any sample rate, bit depth and channel count): mixed to mono, its DC offset taken
out, resampled to 8 kHz with scipy's polyphase resampler, silence (or a room's quiet noise) trimmed
at both ends (frames of 10 ms below 5% of the loudest frame's RMS), centred in one second of zeros
(centre-cropped if longer), then standardised to zero mean and unit variance, as the recipe leaves
every waveform.
"""
import math
import struct

import numpy as np

from .errors import DataError

IMAGE_SIZE, BOX = 28, 20
SAMPLE_RATE, AUDIO_LENGTH = 8000, 8000
SILENCE_FRAME, SILENCE_SHARE = 80, 0.05  # 10 ms frames; quieter than 5% of the loudest frame's RMS is silence
WORK_SIDE = 512            # a larger photo is shrunk to this longer side before its ink is looked for
BACKGROUND_WINDOW = 0.25   # the paper is estimated over windows this share of the shorter side (> a stroke)
MIN_CONTRAST = 0.05        # ink less than this darker than its paper: a blank image
NEIGHBOUR_SHARE = 0.05     # an ink component this share of the largest's area, near it, is part of the digit
# What a person's file may be, checked before anything is allocated: a 50-megapixel photo, one minute of
# sound at any rate from 1 kHz to 384 kHz (a header claiming 2^31 Hz or 1 Hz is not a recording).
MAX_PIXELS = 50_000_000
MIN_RATE, MAX_RATE, MAX_SECONDS = 1_000, 384_000, 60
MIN_SECONDS = 0.05  # the shortest FSDD recording is about 0.14 s
# A 28x28 image is in MNIST's format when the ring of its outer BORDER pixels averages at most
# DARK_BORDER: MNIST's background is 0, and a noisy test digit's ring of 208 pixels averages 0.5 x p
# (p <= 0.85 in the recipe: 0.425, give or take 0.03), at most 0.48 over the 5,859 real test digits;
# paper is lighter.
BORDER, DARK_BORDER = 2, 0.6


def load_image(path):
    """A 28x28 float32 array in [0, 1], white digit on black, centred like MNIST; DataError if unreadable."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as img:
            if img.size[0] * img.size[1] > MAX_PIXELS:
                raise DataError(f"image {path} is {img.size[0]}x{img.size[1]} pixels, more than {MAX_PIXELS:,}: "
                                "shrink it first")
            img.load()
            grey = greyscale(img)
    except FileNotFoundError:
        raise DataError(f"no image file {path}") from None
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot read image {path}: {e}") from None
    if not np.isfinite(grey).all():
        raise DataError(f"image {path} holds pixel values that are not finite numbers (NaN or infinite)")
    return mnist_like(grey, path)


def greyscale(img):
    """A PIL image of any mode as float32 greys in [0, 1]."""
    from PIL import Image
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit PNG greys: convert("L") would clip them at 255
        return np.clip(np.asarray(img, dtype=np.float32) / 65535.0, 0.0, 1.0)
    if img.mode == "F":
        grey = np.asarray(img, dtype=np.float32)
        if not np.isfinite(grey).all():
            return grey  # load_image names it; clipping would make NaN look like paper
        return np.clip(grey / 255.0 if grey.max() > 1.0 else grey, 0.0, 1.0)
    if "A" in img.getbands() or "transparency" in img.info:  # ink on a transparent sheet: lay it on white paper
        img = Image.alpha_composite(Image.new("RGBA", img.size, "white"), img.convert("RGBA"))
    return np.asarray(img.convert("L"), dtype=np.float32) / 255.0


def mnist_like(grey, name="image"):
    """MNIST's preprocessing of a greyscale array in [0, 1] (see the module docstring)."""
    from PIL import Image
    if grey.size == 0:
        raise DataError(f"{name} is empty")
    if grey.shape == (IMAGE_SIZE, IMAGE_SIZE):
        border = np.concatenate([grey[:BORDER].ravel(), grey[-BORDER:].ravel(), grey[:, :BORDER].ravel(),
                                 grey[:, -BORDER:].ravel()])
        if border.mean() <= DARK_BORDER:  # MNIST's format already: as it is
            if grey.max() <= 0:
                raise DataError(f"{name} has no ink: a blank image")
            return np.clip(grey, 0.0, 1.0).astype(np.float32)
    crop = find_ink(grey, name)
    scale = BOX / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))  # PIL: (width, height)
    box = np.asarray(Image.fromarray((crop * 255).astype(np.uint8)).resize(size, Image.LANCZOS),
                     dtype=np.float32) / 255.0
    out = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    top, left = (IMAGE_SIZE - box.shape[0]) // 2, (IMAGE_SIZE - box.shape[1]) // 2
    out[top:top + box.shape[0], left:left + box.shape[1]] = box
    mass = out.sum()
    cy = (out.sum(1) * np.arange(IMAGE_SIZE)).sum() / mass
    cx = (out.sum(0) * np.arange(IMAGE_SIZE)).sum() / mass
    # MNIST put the centre of mass at pixel (14, 14) (its training digits average 14.00, 14.01)
    dy, dx = round(IMAGE_SIZE / 2 - cy), round(IMAGE_SIZE / 2 - cx)
    shifted = np.zeros_like(out)
    src = out[max(0, -dy):IMAGE_SIZE - max(0, dy), max(0, -dx):IMAGE_SIZE - max(0, dx)]
    shifted[max(0, dy):max(0, dy) + src.shape[0], max(0, dx):max(0, dx) + src.shape[1]] = src
    return np.clip(shifted, 0.0, 1.0)


def find_ink(grey, name="image"):
    """The digit of a photo, cropped, light on black in [0, 1] (see the module docstring): the paper's
    background estimated and taken away, a threshold from the image's own histogram (Otsu), the largest
    ink component and its neighbours kept, whatever touches the frame's edge left out."""
    from PIL import Image
    from scipy import ndimage
    if max(grey.shape) > WORK_SIDE:  # a phone's 12 megapixels: the digit's shape needs far fewer
        scale = WORK_SIDE / max(grey.shape)
        size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
        grey = np.asarray(Image.fromarray(grey).resize(size, Image.BOX), dtype=np.float32)
    # the sheet without its ink: a grey closing (opening, for light ink on dark) wider than a stroke
    # follows the light across the sheet and fills every stroke in with paper
    k = max(3, round(min(grey.shape) * BACKGROUND_WINDOW)) | 1
    # which way the strokes stand out of the sheet: the paper is most of the picture, so against the local
    # mean it sits on the side away from the ink (above it, for dark ink: the median detail is positive)
    detail = grey - ndimage.uniform_filter(grey, size=k)
    dark_ink = (np.median(detail) or np.median(grey) - grey.mean()) > 0  # dark on paper (MNIST's: light on dark)
    if dark_ink:
        paper = ndimage.grey_closing(grey, size=(k, k))
        ink = 1.0 - grey / np.maximum(paper, 1e-3)  # light falls on paper and ink alike: their ratio is the ink
    else:
        ink = grey - ndimage.grey_opening(grey, size=(k, k))
    ink = np.clip(ink, 0.0, None)
    if ink.max() < MIN_CONTRAST:  # strokes wider than the window (a small, bold drawing): one paper tone, the median
        ink = np.clip(np.median(grey) - grey if dark_ink else grey - np.median(grey), 0.0, None)
    if ink.max() < MIN_CONTRAST:
        raise DataError(f"{name} has no ink: a blank image")
    mask = ink > otsu_threshold(ink)
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    index = np.arange(1, count + 1)
    areas = ndimage.sum_labels(mask, labels, index)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    inside = [i for i in index if i not in edge] or list(index)  # a digit cut by the frame: keep it then
    boxes = ndimage.find_objects(labels)
    largest = max(inside, key=lambda i: areas[i - 1])
    rows, cols = boxes[largest - 1]
    near = (rows.start - (rows.stop - rows.start) // 2, rows.stop + (rows.stop - rows.start) // 2,
            cols.start - (cols.stop - cols.start) // 2, cols.stop + (cols.stop - cols.start) // 2)
    keep = [i for i in inside if areas[i - 1] >= NEIGHBOUR_SHARE * areas[largest - 1]
            and boxes[i - 1][0].start < near[1] and boxes[i - 1][0].stop > near[0]
            and boxes[i - 1][1].start < near[3] and boxes[i - 1][1].stop > near[2]]
    strokes = np.isin(labels, keep)
    ink = np.where(ndimage.binary_dilation(strokes, iterations=2), ink, 0.0)  # the strokes' soft edges too
    rows, cols = np.flatnonzero(strokes.any(1)), np.flatnonzero(strokes.any(0))
    crop = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    return np.clip(crop / np.percentile(ink[strokes], 90), 0.0, 1.0)  # a stroke's core is full white, as MNIST's


def otsu_threshold(values, bins=256):
    """Otsu's threshold of an array: the level that best splits its histogram into two classes (the
    largest variance between them)."""
    counts, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(counts).astype(np.float64)
    total = weight[-1]
    mass = np.cumsum(counts * centres)
    mean_low = mass / np.maximum(weight, 1)
    mean_high = (mass[-1] - mass) / np.maximum(total - weight, 1)
    between = weight * (total - weight) * (mean_low - mean_high) ** 2
    return float(centres[int(np.argmax(between[:-1]))])


def load_audio(path):
    """One second of 8 kHz float32 audio, standardised, the utterance centred; DataError if unusable."""
    from scipy.io import wavfile
    try:
        rate, data = wavfile.read(path)  # as large as the file; resampling is what a bad rate would blow up
        if not MIN_RATE <= rate <= MAX_RATE:
            raise DataError(f"{path} says it is sampled at {rate:,} Hz; a recording is {MIN_RATE:,} to {MAX_RATE:,} Hz")
        if len(data) > MAX_SECONDS * rate:
            raise DataError(f"{path} is {len(data) / rate:.0f} s long; give at most {MAX_SECONDS} s around the word")
    except FileNotFoundError:
        raise DataError(f"no audio file {path}") from None
    except (ValueError, OSError, EOFError, struct.error) as e:
        raise DataError(f"cannot read WAV file {path}: {e or 'the file ends too early'}") from None
    return speech_like(data, rate, path)


def _to_float(data):
    if data.dtype.kind == "f":
        return data.astype(np.float64)
    if data.dtype == np.uint8:  # 8-bit WAV is unsigned
        return (data.astype(np.float64) - 128.0) / 128.0
    return data.astype(np.float64) / float(np.iinfo(data.dtype).max)


def speech_like(data, rate, name="audio"):
    """The recipe's view of a recording (see the module docstring): [8000] float32."""
    from scipy.signal import resample_poly
    x = _to_float(np.asarray(data))
    if not np.isfinite(x).all():
        raise DataError(f"{name} holds samples that are not finite numbers (NaN or infinite)")
    if x.size and np.abs(x).max() > 1e3:  # float samples far beyond full scale: scaled, or their squares overflow
        x = x / np.abs(x).max()
    if x.ndim == 2:
        x = x.mean(axis=1)  # channels mixed to mono
    if x.size == 0:
        raise DataError(f"{name} holds no samples")
    if len(x) < MIN_SECONDS * rate:  # e.g. a header whose data chunk claims 10 bytes: not "silent"
        raise DataError(f"{name} holds {len(x)} samples ({1000 * len(x) / rate:.0f} ms), too short to hold a "
                        "spoken digit")
    x = x - x.mean()  # a DC offset out first: resampling would take its step at the file's ends for sound
    if rate != SAMPLE_RATE:
        g = math.gcd(int(rate), SAMPLE_RATE)
        x = resample_poly(x, SAMPLE_RATE // g, int(rate) // g)
        x = x - x.mean()
    frames = x[:len(x) // SILENCE_FRAME * SILENCE_FRAME].reshape(-1, SILENCE_FRAME) if len(x) >= SILENCE_FRAME \
        else x.reshape(1, -1)
    rms = np.sqrt((frames ** 2).mean(axis=1))
    if rms.max() <= 1e-6:
        raise DataError(f"{name} is silent: no sound above the noise floor")
    loud = np.flatnonzero(rms >= SILENCE_SHARE * rms.max())
    x = x[loud[0] * SILENCE_FRAME:(loud[-1] + 1) * SILENCE_FRAME]
    if len(x) > AUDIO_LENGTH:  # centre-cropped, as the recipe does
        cut = (len(x) - AUDIO_LENGTH) // 2
        x = x[cut:cut + AUDIO_LENGTH]
    out = np.zeros(AUDIO_LENGTH, dtype=np.float64)
    start = (AUDIO_LENGTH - len(x)) // 2
    out[start:start + len(x)] = x
    out -= out.mean()
    return (out / (out.std() + 1e-8)).astype(np.float32)
