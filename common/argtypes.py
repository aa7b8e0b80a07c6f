"""argparse `type=` checkers shared by every command (the lowest module: it imports nothing of ours).

Each turns the text of a flag into a value or raises ArgumentTypeError, which
argparse prints as one usage line and exit code 2.
"""
import argparse
import re
import math
import os


def _number(text, kind):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a{'n integer' if kind is int else ' number'}: {text!r}") from None


def positive_int(text):
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text):
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text}")
    return value


def fraction(text):
    value = _number(text, float)
    if not 0.0 < value < 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def share(text):
    """A fraction in (0, 1]: 1 keeps everything."""
    value = _number(text, float)
    if not 0.0 < value <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def probability(text):
    """A probability in [0, 1]."""
    value = _number(text, float)
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def positive_float(text):
    value = _number(text, float)
    if not (value > 0.0 and math.isfinite(value)):  # refuses nan, inf and anything <= 0
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def run_name(text):
    """A run folder's name: one path component, so the run stays inside --runs-dir."""
    if not text or text in (".", "..") or "/" in text or (os.sep != "/" and os.sep in text) or "\0" in text:
        raise argparse.ArgumentTypeError(f"must be a plain folder name (no '/', not '.' or '..', not empty), "
                                         f"got {text!r}")
    return text


def bounded_int(low, high):
    """An integer type for argparse within [low, high]: a size beyond `high` would only end in the
    allocator's traceback minutes later."""
    def parse(text):
        value = _number(text, int)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be an integer from {low:,} to {high:,}, got {text}")
        return value
    return parse


def bounded_float(low, high):
    """A finite float type for argparse within [low, high]."""
    def parse(text):
        value = _number(text, float)
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(f"must be a number from {low:g} to {high:g}, got {text}")
        return value
    return parse


def non_negative_float(text):
    value = _number(text, float)
    if not (value >= 0.0 and math.isfinite(value)):  # refuses nan, inf and anything < 0
        raise argparse.ArgumentTypeError(f"must be a non-negative finite number, got {text}")
    return value


def speaker_name(text):
    """An FSDD speaker's name as recordings spell it (digit_speaker_take): letters and digits."""
    if not re.fullmatch(r"[A-Za-z0-9]+", text):
        raise argparse.ArgumentTypeError(f"must be a speaker's name (letters and digits, e.g. jackson), got {text!r}")
    return text
