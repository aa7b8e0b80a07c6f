"""Offline synthetic source: digit images and spoken-digit recordings from nothing.

`synthetic_raw_sources(n_train_images, n_test_images, seed)` builds the same raw
pools a real source provides (see `raw.py`): MNIST-like 28x28 digit images and
FSDD-like 8 kHz recordings named ``{digit}_{speaker}_{take}``. The pairing and
corruption recipe then treats them exactly like real data.

Images: the ten digit glyphs of 22 fonts that matplotlib ships are rasterised
once (module-level cache), then every sample is a batched random warp of one
glyph (rotation, shear, aspect, smooth elastic bend and wobble), a stroke-width
change (blur + threshold, varied along the stroke), an occasional erased piece
of stroke, and MNIST's normalisation (fit the larger side to 20 px, centre by
centre of mass in 28x28).

Audio: a small frame-wise source-filter synthesiser. Each word is a sequence of
phones with formant targets; formant tracks are interpolated between targets;
a glottal pulse train (pitch contour + jitter), aspiration noise and shaped
frication noise are filtered in the STFT domain by a cascade of formant
resonators evaluated per 8 ms frame (overlap-add, no per-sample loops).
Speakers differ in pitch, vocal-tract length, rate, loudness, breathiness,
spectral tilt and per-phone "accent"; every take perturbs these again.

Everything is deterministic given (sizes, seed).
"""
import contextlib
import hashlib
import math
import os

import numpy as np
import torch
import torch.nn.functional as F

from .fsdd import write_wav  # noqa: F401  (re-exported: write a generated utterance to listen to)
from .raw import RawSources, RawSplit

SYNTHETIC_VERSION = 1

SAMPLE_RATE = 8000
MAX_SAMPLES = 8000  # one second, like the longest recordings the recipe accepts

# Size of the default build (MNIST-sized pools for the avdigits recipe) and the
# recording pool it gets (FSDD has 6 speakers x 50 takes x 10 digits = 3000).
DEFAULT_N_TRAIN = 17560
DEFAULT_N_TEST = 5859
DEFAULT_SPEAKERS = 10
DEFAULT_TAKES = 30
TEST_TAKES = 5  # takes 0-4 are the test split (FSDD's official split)
MIN_TAKES = 9   # small builds: 5 test takes + 4 train takes

__all__ = [
    "SYNTHETIC_VERSION", "render_digits", "make_speakers", "synthesize_utterance_batch",
    "synthetic_raw_sources", "write_wav", "pool_plan", "font_files",
]


# ----------------------------------------------------------------------------
# images
# ----------------------------------------------------------------------------

# Fonts shipped in matplotlib's mpl-data/fonts/ttf that have ordinary digits.
# cmmi10 has old-style (hanging) figures, which adds shape variety.
_FONT_NAMES = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
    "cmr10.ttf", "cmb10.ttf", "cmss10.ttf", "cmti10.ttf", "cmtt10.ttf", "cmmi10.ttf",
)

_CANVAS = 48        # glyph canvas side (pixels)
_GLYPH_BOX = 29     # the glyph's larger side on the canvas
_SUPERSAMPLE = 4    # coverage supersampling when rasterising a glyph
_GLYPH_CACHE = {}   # "bank" -> (glyphs float32 [F*10,48,48], stroke widths [F*10]); blur/RBF matrices


@contextlib.contextmanager
def _one_torch_thread():
    """Run torch ops single-threaded (restored afterwards).

    The generator's ops are many and small; on a busy 2-core machine intra-op
    threading made them 3-6x slower, and one thread also fixes the float
    summation order, so the bytes do not depend on the caller's thread count.
    """
    prev = torch.get_num_threads()
    if prev != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if prev != 1:
            torch.set_num_threads(prev)


def font_files():
    """Paths of the fonts used for the digit glyphs (those present in this matplotlib)."""
    import matplotlib

    root = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
    return [os.path.join(root, n) for n in _FONT_NAMES if os.path.exists(os.path.join(root, n))]


def _rasterise(polygons, size, ss):
    """Even-odd fill of closed polygons (canvas pixel units) -> coverage [size,size] in [0,1].

    Scanline parity: every edge crossing of a sample row toggles the inside state
    from that column on; a cumulative sum along the row gives the parity.
    """
    n = size * ss
    segs = np.concatenate([np.stack([p[:-1], p[1:]], axis=1) for p in polygons])  # [E,2,2]
    x0, y0, x1, y1 = segs[:, 0, 0], segs[:, 0, 1], segs[:, 1, 0], segs[:, 1, 1]
    yc = (np.arange(n) + 0.5)[:, None] / ss                       # [n,1] sample-row centres
    crosses = (y0 <= yc) != (y1 <= yc)                             # [n,E]
    dy = np.where(y1 == y0, 1.0, y1 - y0)
    xi = x0 + (yc - y0) / dy * (x1 - x0)                           # crossing abscissa
    rows, edges = np.nonzero(crosses)
    cols = np.clip(np.floor(xi[rows, edges] * ss - 0.5).astype(np.int64) + 1, 0, n)
    toggles = np.bincount(rows * (n + 1) + cols, minlength=n * (n + 1)).reshape(n, n + 1)
    inside = (np.cumsum(toggles[:, :n], axis=1) % 2).astype(np.float32)
    return inside.reshape(size, ss, size, ss).mean(axis=(1, 3))


def _glyph_polygons(font, char):
    """Outline of one glyph of an FT2Font as closed polygons (y up), via matplotlib's FreeType."""
    from matplotlib import ft2font
    from matplotlib.path import Path

    flags = ft2font.LoadFlags.NO_HINTING if hasattr(ft2font, "LoadFlags") else ft2font.LOAD_NO_HINTING
    font.load_char(ord(char), flags=flags)
    vertices, codes = font.get_path()
    return Path(vertices, codes).to_polygons(closed_only=True)


def _glyph_bank():
    """Rasterise every (font, digit) glyph once; cached for the life of the process."""
    if "bank" in _GLYPH_CACHE:
        return _GLYPH_CACHE["bank"]
    from matplotlib import ft2font

    glyphs, widths = [], []
    for path in font_files():
        font = ft2font.FT2Font(path)
        font.set_size(100, 72)
        for digit in range(10):
            polys = _glyph_polygons(font, str(digit))
            allv = np.concatenate(polys)
            lo, hi = allv.min(0), allv.max(0)
            scale = _GLYPH_BOX / max(hi - lo)
            centre = (lo + hi) / 2
            polys = [(q - centre) * scale * [1.0, -1.0] + _CANVAS / 2 for q in polys]  # y-up -> rows down
            cov = _rasterise(polys, _CANVAS, _SUPERSAMPLE)
            perimeter = sum(np.linalg.norm(np.diff(q, axis=0), axis=1).sum() for q in polys)
            glyphs.append(cov)
            widths.append(2.0 * cov.sum() / max(perimeter, 1e-6))   # mean stroke width (px)
    bank = (torch.from_numpy(np.stack(glyphs).astype(np.float32)),   # [F*10,c,c]
            torch.tensor(widths, dtype=torch.float32))
    _GLYPH_CACHE["bank"] = bank
    return bank


def _blur_matrix(size, sigma):
    """[size,size] matrix applying a 1-D Gaussian blur with zero padding (x @ K.T blurs rows)."""
    key = ("blur", size, sigma)
    if key not in _GLYPH_CACHE:
        i = torch.arange(size, dtype=torch.float32)
        k = torch.exp(-0.5 * ((i[:, None] - i[None, :]) / sigma) ** 2)
        radius = torch.arange(-size + 1, size, dtype=torch.float32)
        k = k / torch.exp(-0.5 * (radius / sigma) ** 2).sum()
        _GLYPH_CACHE[key] = k
    return _GLYPH_CACHE[key]


def _blur(x, sigma):
    """Separable Gaussian blur of [N,H,W] images as two matrix products (fast on CPU)."""
    kh, kw = _blur_matrix(x.shape[1], sigma), _blur_matrix(x.shape[2], sigma)
    return torch.matmul(kh, torch.matmul(x, kw.T))


def _elastic_basis(size, n_ctrl):
    """[size,n_ctrl] smooth (Gaussian RBF) interpolation weights from a coarse control grid."""
    key = ("elastic", size, n_ctrl)
    if key not in _GLYPH_CACHE:
        x = (2 * torch.arange(size, dtype=torch.float32) + 1) / size - 1
        c = torch.linspace(-1, 1, n_ctrl)
        w = torch.exp(-0.5 * ((x[:, None] - c[None, :]) / (2.0 / (n_ctrl - 1))) ** 2)
        _GLYPH_CACHE[key] = w / w.sum(1, keepdim=True).sqrt()
    return _GLYPH_CACHE[key]


def _normal_cdf(x):
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _render_chunk(bank, widths, p):
    """Warp, thicken/thin and MNIST-normalise one chunk; p holds its random parameters."""
    n, c = p["glyph"].shape[0], _CANVAS
    src = bank[p["glyph"]][:, None]                               # [n,1,c,c]

    # affine map (output -> input coordinates), zoomed out so the warped glyph stays on canvas
    cos, sin = torch.cos(p["rot"]), torch.sin(p["rot"])
    zoom = 1.15
    one, zero = torch.ones(n), torch.zeros(n)
    rot = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)
    shear = torch.stack([torch.stack([one, p["shear"]], 1), torch.stack([zero, one], 1)], 1)
    aspect = torch.diag_embed(torch.stack([1 / p["sx"], 1 / p["sy"]], 1))
    m = zoom * aspect @ rot @ shear                                # [n,2,2]
    coords = (2 * torch.arange(c, dtype=torch.float32) + 1) / c - 1
    # smooth elastic field: coarse Gaussian displacements interpolated to the canvas
    # (a coarse 3x3 "bend" of the whole digit plus a finer 6x6 "wobble" of its strokes)
    ub, uw = _elastic_basis(c, p["bend"].shape[-1]), _elastic_basis(c, p["wobble"].shape[-1])
    disp = (torch.matmul(torch.matmul(ub, p["bend"]), ub.T) * p["bend_amp"].view(n, 1, 1, 1)
            + torch.matmul(torch.matmul(uw, p["wobble"]), uw.T) * p["wobble_amp"].view(n, 1, 1, 1))
    m4 = m.reshape(n, 4, 1, 1)
    gx = m4[:, 0] * coords[None, None, :] + m4[:, 1] * coords[None, :, None] + disp[:, 0]
    gy = m4[:, 2] * coords[None, None, :] + m4[:, 3] * coords[None, :, None] + disp[:, 1]
    grid = torch.stack([gx, gy], -1)                              # [n,c,c,2]
    warped = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0]

    # stroke width: blur, then threshold where a straight edge would move by `delta` pixels
    sigma = 1.1
    blurred = _blur(warped, sigma)
    width_now = widths[p["glyph"]] / torch.sqrt(torch.abs(torch.linalg.det(m)))
    delta = 0.5 * (p["width"] - width_now)                        # >0 thickens, <0 thins
    thr = _normal_cdf(-delta / sigma).clamp(0.08, 0.6).view(n, 1, 1)
    # "pen pressure": a smooth field varies the width along the strokes
    up = _elastic_basis(c, p["pressure"].shape[-1])
    pressure = torch.matmul(torch.matmul(up, p["pressure"]), up.T) * p["pressure_amp"].view(n, 1, 1)
    thr = (thr + pressure).clamp_(0.07, 0.7)                      # > ramp half-width: black stays 0
    ink = ((blurred - thr) / 0.12 + 0.5).clamp_(0.0, 1.0)
    # some digits lose a piece of stroke (a soft-edged disc is erased), as in scanned handwriting
    dx = coords[None, None, :] - p["erase_xy"][:, 0, None, None]
    dy = coords[None, :, None] - p["erase_xy"][:, 1, None, None]
    dist = torch.sqrt(dx * dx + dy * dy) * (c / 2)                # canvas px
    ink = ink * ((dist - p["erase_r"].view(n, 1, 1)) / 1.5).clamp_(0.0, 1.0)

    # MNIST normalisation: larger bbox side -> 20 px, centre of mass -> image centre
    mask = ink > 0.5
    cols, rows = mask.any(dim=1), mask.any(dim=2)                 # [n,c] each
    idx = torch.arange(c)
    x0 = torch.where(cols, idx, c).min(1).values
    x1 = torch.where(cols, idx, -1).max(1).values
    y0 = torch.where(rows, idx, c).min(1).values
    y1 = torch.where(rows, idx, -1).max(1).values
    extent = torch.maximum(x1 - x0 + 1, y1 - y0 + 1).clamp(min=4).float()
    scale = 20.0 / extent                                          # output px per canvas px
    mass = ink.sum(dim=(1, 2)).clamp(min=1e-6)
    cx = (ink.sum(dim=1) * idx).sum(1) / mass
    cy = (ink.sum(dim=2) * idx).sum(1) / mass
    v = torch.arange(28, dtype=torch.float32) - 13.5
    xs = cx[:, None] + (v[None, :] - p["jx"][:, None]) / scale[:, None]   # canvas index coords
    ys = cy[:, None] + (v[None, :] - p["jy"][:, None]) / scale[:, None]
    gx, gy = (2 * xs + 1) / c - 1, (2 * ys + 1) / c - 1
    grid28 = torch.stack([gx[:, None, :].expand(n, 28, 28), gy[:, :, None].expand(n, 28, 28)], -1)
    smooth = _blur(ink, 0.5)[:, None]                              # anti-alias the slight shrink
    out = F.grid_sample(smooth, grid28, mode="bilinear", padding_mode="zeros", align_corners=False)
    out = ((out[:, 0] * p["gain"].view(n, 1, 1) - 0.05) / 0.95).clamp_(0.0, 1.0)   # no faint halo
    return torch.round(out * 255.0).to(torch.uint8)


def render_digits(labels, rng, chunk=1024):
    """MNIST-like images of the given digits: uint8 [N,28,28], white stroke on black.

    Each image is one font glyph under a random rotation (sd ~10 deg, at most
    23), shear, aspect change, smooth elastic bend and wobble, a stroke-width
    change that also varies along the stroke, sometimes an erased piece of
    stroke; then it is fitted to a 20x20 box and centred by mass in 28x28 like
    MNIST. All randomness comes from `rng`.
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    n = labels.shape[0]
    if n and (labels.min() < 0 or labels.max() > 9):
        raise ValueError("labels must be digits 0-9")
    bank, widths = _glyph_bank()
    n_fonts = bank.shape[0] // 10
    if n == 0:
        return np.zeros((0, 28, 28), np.uint8)
    # all random draws up front, in a fixed order (determinism independent of chunking)
    f32 = np.float32
    params = {
        "glyph": rng.integers(0, n_fonts, n) * 10 + labels,
        "rot": np.clip(rng.normal(0.0, 0.17, n), -0.4, 0.4).astype(f32),          # radians
        "shear": rng.uniform(-0.3, 0.5, n).astype(f32),
        "sx": np.exp(rng.normal(0.0, 0.15, n)).astype(f32),
        "sy": np.exp(rng.normal(0.0, 0.08, n)).astype(f32),
        "bend": rng.standard_normal((n, 2, 3, 3)).astype(f32),
        "bend_amp": np.where(rng.random(n) < 0.1, rng.uniform(0.14, 0.25, n),
                             rng.uniform(0.0, 0.14, n)).astype(f32),      # a few sloppy ones
        "wobble": rng.standard_normal((n, 2, 6, 6)).astype(f32),
        "wobble_amp": rng.uniform(0.01, 0.06, n).astype(f32),
        "pressure": rng.standard_normal((n, 4, 4)).astype(f32),
        "pressure_amp": rng.uniform(0.0, 0.15, n).astype(f32),
        "erase_xy": rng.uniform(-0.45, 0.45, (n, 2)).astype(f32),
        "erase_r": np.where(rng.random(n) < 0.2, rng.uniform(2.0, 5.0, n), -2.0).astype(f32),
        "width": rng.uniform(1.9, 4.5, n).astype(f32),                              # canvas px
        "jx": rng.uniform(-0.5, 0.5, n).astype(f32),
        "jy": rng.uniform(-0.5, 0.5, n).astype(f32),
        "gain": rng.uniform(1.0, 1.5, n).astype(f32),
    }
    params = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in params.items()}
    out = np.empty((n, 28, 28), np.uint8)
    with torch.no_grad(), _one_torch_thread():
        for start in range(0, n, chunk):
            sl = slice(start, min(n, start + chunk))
            out[sl] = _render_chunk(bank, widths, {k: v[sl] for k, v in params.items()}).numpy()
    return out


# ----------------------------------------------------------------------------
# audio
# ----------------------------------------------------------------------------

# Phones. f: formant targets F1-F3 (Hz, adult-male reference); f_end: second
# target for diphthongs; dur: base duration (ms). kind: V vowel, G glide/liquid,
# N nasal, F voiceless fricative, Z voiced fricative, S stop (closure, burst,
# aspiration). fric: (noise type, amplitude) of the frication / burst noise.
_PHONES = {
    "IY": dict(kind="V", f=(290, 2250, 2950), dur=120),
    "IH": dict(kind="V", f=(420, 1950, 2550), dur=95),
    "EH": dict(kind="V", f=(560, 1800, 2500), dur=105),
    "AH": dict(kind="V", f=(620, 1180, 2450), dur=105),
    "AX": dict(kind="V", f=(500, 1400, 2450), dur=65),
    "AO": dict(kind="V", f=(590, 880, 2450), dur=165),
    "UW": dict(kind="V", f=(330, 980, 2250), f_end=(300, 820, 2200), dur=185),
    "OW": dict(kind="V", f=(540, 1000, 2400), f_end=(370, 820, 2300), dur=175),
    "AY": dict(kind="V", f=(730, 1150, 2450), f_end=(430, 1950, 2550), dur=220),
    "EY": dict(kind="V", f=(520, 1850, 2500), f_end=(340, 2150, 2700), dur=195),
    "W": dict(kind="G", f=(320, 700, 2200), dur=65),
    "R": dict(kind="G", f=(390, 1150, 1550), dur=75),
    "N": dict(kind="N", f=(280, 1450, 2500), dur=80),
    "S": dict(kind="F", f=(400, 1700, 2650), dur=130, fric=(0, 1.0)),
    "Z": dict(kind="Z", f=(400, 1700, 2650), dur=100, fric=(0, 0.45)),
    "F": dict(kind="F", f=(400, 1100, 2400), dur=110, fric=(1, 0.35)),
    "V": dict(kind="Z", f=(400, 1100, 2400), dur=70, fric=(1, 0.18)),
    "TH": dict(kind="F", f=(400, 1450, 2600), dur=100, fric=(1, 0.25)),
    "T": dict(kind="S", f=(400, 1800, 2700), dur=65, fric=(2, 1.2)),
    "K": dict(kind="S", f=(350, 1900, 2300), dur=65, fric=(3, 1.2)),
}
# Noise spectra (centre Hz, width Hz): 0 sibilant /s z/, 1 flat /f v th/, 2 /t/ burst, 3 /k/ burst.
# Gaussian skirt of `width` below the centre and of twice that above it.
_FRIC_TYPES = np.array([(3600.0, 650.0), (2600.0, 2200.0), (3300.0, 1000.0), (1900.0, 450.0)])

WORDS = {
    0: ("Z", "IH", "R", "OW"),
    1: ("W", "AH", "N"),
    2: ("T", "UW"),
    3: ("TH", "R", "IY"),
    4: ("F", "AO", "R"),
    5: ("F", "AY", "V"),
    6: ("S", "IH", "K", "S"),
    7: ("S", "EH", "V", "AX", "N"),
    8: ("EY", "T"),
    9: ("N", "AY", "N"),
}

_SCHWA = np.array([500.0, 1500.0, 2500.0])
_BASE_BW = np.array([70.0, 100.0, 160.0, 250.0])   # formant bandwidths (Hz)
_BASE_F4 = 3350.0
_HOP = 64            # 8 ms frames
_N_FFT = 256
_WIN = 128           # 16 ms Hann window, zero-padded to 256 (room for the resonators' ringing)
_N_FRAMES = MAX_SAMPLES // _HOP + 1
_FRIC_LEVEL = 0.5        # frication noise level relative to the glottal pulses (set by eye)
_ASPIRATION_LEVEL = 0.3  # aspiration noise level (through the formants)


def make_speakers(n, rng):
    """n seeded speaker parameter dicts named spk0..spk{n-1}.

    Half the speakers (alternating) get a low voice (F0 85-150 Hz), half a high
    one (160-255 Hz); the vocal-tract factor that scales all formants (0.85-1.2)
    follows the pitch with some spread.
    """
    group = rng.permutation(np.arange(n) % 2)
    speakers = []
    for i in range(n):
        f0 = rng.uniform(85, 150) if group[i] == 0 else rng.uniform(160, 255)
        vtl = float(np.clip(0.86 + 0.30 * (f0 - 85) / 170 + rng.normal(0, 0.04), 0.85, 1.2))
        accent = {ph: np.exp(rng.normal(0.0, 0.06, 3)) for ph in sorted(_PHONES)}
        dur_style = {ph: float(np.exp(rng.normal(0.0, 0.12))) for ph in sorted(_PHONES)}
        speakers.append(dict(
            name=f"spk{i}",
            f0=float(f0),                                  # mean pitch (Hz)
            vtl=vtl,                                       # formant scale factor
            rate=float(rng.uniform(0.8, 1.25)),            # >1 speaks faster
            loudness=float(rng.uniform(0.35, 0.85)),       # target peak, fraction of int16 range
            breathiness=float(rng.uniform(0.02, 0.3)),     # aspiration noise during voicing
            tilt=float(rng.uniform(0.6, 1.6)),             # source roll-off order above ~1 kHz
            open_quotient=float(rng.uniform(0.45, 0.7)),
            jitter=float(rng.uniform(0.004, 0.02)),        # frame-to-frame pitch jitter (fraction)
            rise=float(rng.uniform(0.0, 0.15)),            # intonation: early rise ...
            fall=float(rng.uniform(0.1, 0.35)),            # ... then fall towards the end
            bw_scale=float(rng.uniform(0.8, 1.4)),         # formant bandwidths
            fric_gain=float(rng.uniform(0.6, 1.5)),
            fric_shift=float(np.exp(rng.normal(0.0, 0.05))),
            release_prob=float(rng.uniform(0.5, 1.0)),     # release of a word-final stop
            accent=accent,                                 # per-phone formant factors
            dur_style=dur_style,                           # per-phone duration factors
        ))
    return speakers


def _segments(digit, spk, rng):
    """One take's phones as segments (ms) with source settings and formant anchors."""
    take_rate = spk["rate"] * np.exp(rng.normal(0, 0.13))
    take_vtl = spk["vtl"] * np.exp(rng.normal(0, 0.035))
    # vowels/glides drift towards schwa this take (a few takes are very sloppy)
    undershoot = rng.uniform(0.35, 0.6) if rng.random() < 0.1 else rng.uniform(0.0, 0.35)
    schwa = _SCHWA * take_vtl
    phones = WORDS[int(digit)]
    segs = []
    for i, ph in enumerate(phones):
        d = _PHONES[ph]
        kind = d["kind"]
        dur = d["dur"] * spk["dur_style"][ph] * np.exp(rng.normal(0, 0.2)) / take_rate
        if i == len(phones) - 1 and kind in "VNGZ":
            dur *= 1.25                                            # final lengthening
        fac = spk["accent"][ph] * np.exp(rng.normal(0, 0.06, 3)) * take_vtl
        f = np.array(d["f"], float) * fac
        if kind in "VG":
            f = f + undershoot * (schwa - f)
        base = dict(av=0.0, ah=0.0, af=0.0, ftype=0, nasal=0.0)
        if kind == "S":
            initial, final = i == 0, i == len(phones) - 1
            closure = 15.0 if initial else dur * np.exp(rng.normal(0, 0.1))
            segs.append(dict(base, dur=closure, anchors=[(1.0, f)]))
            if final and rng.random() > spk["release_prob"]:
                continue                                            # unreleased final stop
            burst = np.clip(rng.normal(14, 3), 8, 22)
            segs.append(dict(base, dur=burst, af=d["fric"][1], ftype=d["fric"][0], anchors=[]))
            asp = (rng.uniform(35, 65) if not final else rng.uniform(20, 50)) / take_rate
            if phones[i + 1:i + 2] == ("S",):
                asp *= 0.3
            segs.append(dict(base, dur=asp, ah=0.6, anchors=[]))
            continue
        seg = dict(base, dur=dur)
        if kind == "V":
            seg.update(av=1.0)
        elif kind == "G":
            seg.update(av=0.8)
        elif kind == "N":
            seg.update(av=0.6, nasal=1.0)
        elif kind == "F":
            seg.update(af=d["fric"][1], ftype=d["fric"][0])
        elif kind == "Z":
            seg.update(av=0.35, af=d["fric"][1], ftype=d["fric"][0])
        if "f_end" in d:
            f_end = np.array(d["f_end"], float) * fac
            seg["anchors"] = [(0.2, f), (0.85, f_end + undershoot * (schwa - f_end))]
        else:
            seg["anchors"] = [(0.5, f)]
        segs.append(seg)
    return segs, take_vtl


def _utterance_tracks(digit, spk, rng):
    """Frame-rate parameter tracks (8 ms frames over the one-second buffer) for one take."""
    segs, take_vtl = _segments(digit, spk, rng)
    durs = np.array([s["dur"] for s in segs]) / 1000.0
    lead = rng.uniform(0.01, 0.12)
    trail = rng.uniform(0.02, 0.08)
    cut = rng.random(2) < 0.04                 # a few recordings start late or stop early
    if cut[0]:
        lead = -rng.uniform(0.02, 0.06)
    if cut[1]:
        trail = -rng.uniform(0.02, 0.05)
    budget = MAX_SAMPLES / SAMPLE_RATE - lead - trail - 0.02
    if durs.sum() > budget:
        durs *= budget / durs.sum()
    starts = lead + np.concatenate([[0.0], np.cumsum(durs)[:-1]])
    ends = starts + durs
    speech_end = ends[-1]
    length = int(min(MAX_SAMPLES, round((speech_end + trail) * SAMPLE_RATE)))
    t = np.arange(_N_FRAMES) * (_HOP / SAMPLE_RATE)

    # formant tracks: linear interpolation between anchor points, then smoothing
    anchors = sorted((st + pos * du, tuple(f)) for s, st, du in zip(segs, starts, durs)
                     for pos, f in s["anchors"])
    at = np.array([a[0] for a in anchors])
    af = np.array([a[1] for a in anchors])
    formants = np.empty((4, t.size))
    for k in range(3):
        formants[k] = np.interp(t, at, af[:, k])
    formants[3] = _BASE_F4 * take_vtl
    formants = _smooth(formants, 3)
    formants[1] = np.maximum(formants[1], formants[0] + 250)
    formants[2] = np.maximum(formants[2], formants[1] + 300)
    formants[3] = np.maximum(formants[3], formants[2] + 300)
    formants = np.minimum(formants, np.array([[1200.0], [3000.0], [3700.0], [3900.0]]))

    # source tracks: per-segment steps (zero outside the word)
    seg_idx = np.searchsorted(ends, t, side="right")
    inside = (t >= starts[0]) & (seg_idx < len(segs))
    seg_idx = np.minimum(seg_idx, len(segs) - 1)
    table = np.array([[s["av"], s["ah"], s["af"], s["nasal"], s["ftype"]] for s in segs])
    av, ah, afr, nasal = (np.where(inside, table[seg_idx, j], 0.0) for j in range(4))
    ftype = table[seg_idx, 4].astype(np.int64)
    # voicing decays over the last ~0.1 s, with shimmer
    voiced = np.nonzero(av > 0)[0]
    if voiced.size:
        fade = np.clip((t[voiced[-1]] - t) / rng.uniform(0.06, 0.15), 0.0, 1.0) ** 0.7
        av = av * (0.25 + 0.75 * fade)
    av = _smooth(av[None] * np.exp(rng.normal(0, 0.05, t.size)), 3)[0]
    nasal = _smooth(nasal[None], 3)[0]
    ah = ah + spk["breathiness"] * np.exp(rng.normal(0, 0.3)) * av
    fric = np.zeros((4, t.size))
    fric[ftype, np.arange(t.size)] = afr * spk["fric_gain"] * np.exp(rng.normal(0, 0.15))

    # pitch: speaker mean x take factor x (early rise, late fall) x slow wander x jitter
    tau = np.clip((t - starts[0]) / max(speech_end - starts[0], 1e-3), 0, 1)
    rise = spk["rise"] * np.exp(rng.normal(0, 0.3))
    fall = spk["fall"] * np.exp(rng.normal(0, 0.2))
    contour = 1 + rise * np.sin(np.pi * np.clip(tau / 0.6, 0, 1)) - fall * tau ** 1.5
    wander = _smooth(rng.normal(0, 0.1, (1, t.size)), 13)[0]
    jit = rng.normal(0, spk["jitter"], t.size)
    f0 = np.clip(spk["f0"] * np.exp(rng.normal(0, 0.08)) * contour * np.exp(wander + jit), 60, 400)
    bw = _BASE_BW[:, None] * spk["bw_scale"] * np.exp(rng.normal(0, 0.08, (4, 1)))
    bw = np.repeat(bw, t.size, axis=1)
    bw[0] *= 1 + 0.8 * nasal                                  # nasals: broad, low F1
    return dict(av=av, ah=ah, fric=fric, nasal=nasal, f0=f0, formants=formants, bw=bw,
                fric_scale=take_vtl * spk["fric_shift"],
                eq=rng.normal(0.0, 0.3, 3)), length                 # microphone/room colouring


def _smooth(x, k):
    """Moving average along the last axis (edge-padded), x: [C,T]."""
    if k <= 1:
        return x
    pad = k // 2
    xp = np.concatenate([np.repeat(x[:, :1], pad + 1, 1), x, np.repeat(x[:, -1:], k - 1 - pad, 1)], 1)
    xp[:, 0] = 0.0
    c = np.cumsum(xp, 1)
    return (c[:, k:] - c[:, :-k]) / k


_GLOTTAL_TABLE = 512


def _glottal_table(oq):
    """d(flow)/d(phase) of a Rosenberg-style glottal pulse on a phase grid: [B,512] for oq [B,1].

    Flow rises as 0.5(1 - cos(pi phi / tp)), falls as cos(pi/2 (phi - tp) / tn) and is
    closed for the rest of the period (tp = 0.65 oq, tn = 0.35 oq); the derivative
    (radiation-filtered flow) ends each open phase with a sharp negative peak.
    """
    phi = (torch.arange(_GLOTTAL_TABLE, dtype=torch.float32) + 0.5) / _GLOTTAL_TABLE
    tp, tn = 0.65 * oq, 0.35 * oq
    rising = 0.5 * math.pi / tp * torch.sin(math.pi * phi / tp)
    falling = -0.5 * math.pi / tn * torch.sin(0.5 * math.pi * (phi - tp).clamp(min=0) / tn)
    return torch.where(phi < tp, rising, torch.where(phi < tp + tn, falling, torch.zeros(())))


def _formant_envelope(formants, bws, tilt, nasal, freqs):
    """|H| on the STFT grid [B,F,T]: cascade of 4 unity-DC-gain two-pole resonators (Klatt),
    a per-speaker source roll-off and a low-pass for nasal murmur.

    |1 - c z^-1 + r^2 z^-2|^2 on the unit circle expands to a0 + a1 cos w + a2 cos 2w,
    so each resonator costs a few fused passes over the grid.
    """
    w = 2 * math.pi * freqs / SAMPLE_RATE
    cosw, cos2w = torch.cos(w), torch.cos(2 * w)                  # [F,1]
    den, gain = None, 1.0
    for k in range(4):
        r = torch.exp(-math.pi * bws[:, k:k + 1] / SAMPLE_RATE)    # [B,1,T]
        c = 2 * r * torch.cos(2 * math.pi * formants[:, k:k + 1] / SAMPLE_RATE)
        r2 = r * r
        d = (-2 * c * (1 + r2)) * cosw                            # [B,F,T]
        d.add_(1 + c * c + r2 * r2).addcmul_(2 * r2, cos2w)
        den = d if den is None else den.mul_(d)
        gain = gain * (1 - c + r2)
    env = den.clamp_(min=1e-20).rsqrt_().mul_(gain)
    env.mul_((1 + (freqs / 1000.0) ** 2) ** (-0.5 * tilt))          # tilt [B,1,1] -> [B,F,1]
    murmur = 1 - (1 + (freqs / 450.0) ** 2) ** -0.9                # [F,1]
    env.mul_(1 - nasal[:, None, :] * murmur)
    return env


def _render_batch(tracks, spks, n_samples, rng):
    """Source-filter synthesis of a batch of frame tracks -> float32 [B, n_samples].

    n_samples (a multiple of the hop) crops the one-second buffer to the batch's longest take.
    """
    b, nfr = len(tracks), n_samples // _HOP + 1
    stack = lambda key: torch.from_numpy(np.stack([tr[key][..., :nfr] for tr in tracks]).astype(np.float32))
    av, ah, nasal, f0 = stack("av"), stack("ah"), stack("nasal"), stack("f0")   # [B,T]
    fric, formants, bws = stack("fric"), stack("formants"), stack("bw")           # [B,4,T]
    oq = torch.tensor([s["open_quotient"] for s in spks], dtype=torch.float32)[:, None]
    tilt = torch.tensor([s["tilt"] for s in spks], dtype=torch.float32)[:, None, None]
    fscale = torch.tensor([tr["fric_scale"] for tr in tracks], dtype=torch.float32)[:, None, None]

    # glottal source: phase accumulation of the pitch track -> pulse shape by table look-up
    src = F.interpolate(torch.stack([f0, av], 1), size=(nfr - 1) * _HOP + 1, mode="linear",
                        align_corners=True)[..., :n_samples]
    offset = torch.from_numpy(rng.uniform(0, 1, (b, 1)))
    phase = (torch.cumsum(src[:, 0].double(), dim=1) / SAMPLE_RATE + offset).remainder_(1.0)
    idx = (phase * _GLOTTAL_TABLE).long().clamp_(max=_GLOTTAL_TABLE - 1)
    pulses = torch.gather(_glottal_table(oq), 1, idx).mul_(src[:, 1])
    noise = torch.from_numpy(rng.standard_normal((b, n_samples), dtype=np.float32))

    window = torch.hann_window(_WIN)
    spec = torch.stft(torch.cat([pulses, noise]), _N_FFT, hop_length=_HOP, win_length=_WIN,
                      window=window, center=True, return_complex=True)          # [2B,F,T]
    freqs = torch.arange(_N_FFT // 2 + 1, dtype=torch.float32)[:, None] * (SAMPLE_RATE / _N_FFT)
    # vocal tract: pulses and aspiration noise through the frame-wise formant envelope
    env = _formant_envelope(formants, bws, tilt, nasal, freqs)
    # frication / bursts: noise shaped per noise type, gated by each type's track
    types = torch.from_numpy(_FRIC_TYPES.astype(np.float32))
    centre = types[None, None, :, 0] * fscale                       # [B,1,4]
    width = types[None, None, :, 1]
    below = (centre - freqs[None]).clamp(min=0) / width               # [B,F,4]
    above = (freqs[None] - centre).clamp(min=0) / (2 * width)
    shape = torch.exp(-0.5 * (below ** 2 + above ** 2))
    shape = shape / shape.square().mean(1, keepdim=True).sqrt()      # unit-RMS noise per type
    noise_gain = torch.bmm(shape, fric).mul_(_FRIC_LEVEL).addcmul_(env, _ASPIRATION_LEVEL * ah[:, None])
    out = spec[:b].mul_(env).addcmul_(spec[b:], noise_gain)
    eq = torch.from_numpy(np.stack([tr["eq"] for tr in tracks]).astype(np.float32))   # [B,3]
    bands = torch.cos(math.pi * freqs / (SAMPLE_RATE / 2) * torch.arange(1, 4))       # [F,3]
    out.mul_(torch.exp(eq @ bands.T)[:, :, None])                  # smooth +-6 dB channel EQ
    return torch.istft(out, _N_FFT, hop_length=_HOP, win_length=_WIN, window=window,
                       center=True, length=n_samples)


def synthesize_utterance_batch(digits, speakers, rng, batch=192):
    """Synthesise one take of each digit word: list of int16 1-D arrays at 8 kHz (<= 8000 samples).

    digits: sequence of ints 0-9; speakers: one speaker dict (from make_speakers) per digit.
    Deterministic given rng's state and the inputs.
    """
    digits = [int(d) for d in digits]
    if len(speakers) != len(digits):
        raise ValueError("need one speaker dict per digit")
    tracks, lengths = [], []
    for d, s in zip(digits, speakers):
        tr, n = _utterance_tracks(d, s, rng)
        tracks.append(tr)
        lengths.append(n)
    lengths = np.array(lengths, dtype=np.int64)
    out = [None] * len(digits)
    order = np.argsort(lengths, kind="stable")       # similar lengths share a batch: less padding
    with torch.no_grad(), _one_torch_thread():
        for start in range(0, len(order), batch):
            sel = order[start:start + batch]
            n_samples = int(min(MAX_SAMPLES, -(-lengths[sel].max() // _HOP) * _HOP))
            y = _render_batch([tracks[i] for i in sel], [speakers[i] for i in sel], n_samples, rng)
            y = y.double().numpy()
            for row, i in enumerate(sel):
                n = lengths[i]
                x = y[row, :n]
                target = float(np.clip(speakers[i]["loudness"] * np.exp(rng.normal(0, 0.12)), 0.25, 0.92))
                x = x * (target * 32767.0 / max(np.abs(x).max(), 1e-9))
                floor = 10 ** (rng.uniform(-70, -45) / 20) * 32767.0     # background hiss
                x = x + rng.normal(0, floor, n)
                out[i] = np.clip(np.round(x), -32768, 32767).astype(np.int16)
    return out


# ----------------------------------------------------------------------------
# the source
# ----------------------------------------------------------------------------

def pool_plan(n_train_images, n_test_images):
    """(speakers, takes per digit and speaker) of the recording pool for a build of this size.

    The default (MNIST-sized) build gets 10 speakers x 30 takes x 10 digits =
    3000 recordings like FSDD; smaller builds shrink both, keeping 5 test takes
    and at least 4 train takes.
    """
    ratio = max(n_train_images + n_test_images, 1) / (DEFAULT_N_TRAIN + DEFAULT_N_TEST)
    speakers = int(np.clip(round(DEFAULT_SPEAKERS * math.sqrt(ratio)), 4, DEFAULT_SPEAKERS))
    takes = int(np.clip(round(DEFAULT_TAKES * math.sqrt(ratio)), MIN_TAKES, DEFAULT_TAKES))
    return speakers, takes


def _fingerprint(n_train, n_test, seed):
    key = f"synthetic|v{SYNTHETIC_VERSION}|train={n_train}|test={n_test}|seed={seed}"
    return hashlib.sha256(key.encode()).hexdigest()


def _balanced_labels(n, rng):
    return rng.permutation(np.arange(n, dtype=np.int64) % 10)


def synthetic_raw_sources(n_train_images, n_test_images, seed):
    """Raw pools of the synthetic source (see module docstring); deterministic in its arguments."""
    n_train_images, n_test_images, seed = int(n_train_images), int(n_test_images), int(seed)
    ss = np.random.SeedSequence([seed, SYNTHETIC_VERSION, 0x5EED])
    r_train, r_test, r_spk, r_audio = (np.random.default_rng(s) for s in ss.spawn(4))

    train_labels = _balanced_labels(n_train_images, r_train)
    test_labels = _balanced_labels(n_test_images, r_test)
    train_images = render_digits(train_labels, r_train)
    test_images = render_digits(test_labels, r_test)

    n_spk, n_takes = pool_plan(n_train_images, n_test_images)
    speakers = make_speakers(n_spk, r_spk)
    keys = [(d, s, t) for d in range(10) for s in range(n_spk) for t in range(n_takes)]
    recs = synthesize_utterance_batch([k[0] for k in keys], [speakers[k[1]] for k in keys], r_audio)

    def split(test):
        sel = [i for i, k in enumerate(keys) if (k[2] < TEST_TAKES) == test]
        return ([recs[i] for i in sel],
                np.array([keys[i][0] for i in sel], dtype=np.int64),
                [f"{keys[i][0]}_{speakers[keys[i][1]]['name']}_{keys[i][2]}" for i in sel])

    tr_rec, tr_lab, tr_names = split(False)
    te_rec, te_lab, te_names = split(True)
    return RawSources(
        name="synthetic",
        train=RawSplit(train_images, train_labels, tr_rec, tr_lab, tr_names),
        test=RawSplit(test_images, test_labels, te_rec, te_lab, te_names),
        fingerprint=_fingerprint(n_train_images, n_test_images, seed),
    )
