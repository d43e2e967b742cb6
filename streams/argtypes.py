"""Argument types shared by every command line (replay, probe, run, enrich): each refuses
a bad value with a message argparse prints next to the option's name."""

from __future__ import annotations

import argparse
import math


def whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected a number >= {minimum}, got {value}")
    return value


def positive_int(text: str) -> int:
    return whole_number(text, 1)


def non_negative_int(text: str) -> int:
    return whole_number(text, 0)


def seconds(text: str, allow_zero: bool = False) -> float:
    """A finite, non-negative number of seconds (zero only when `allow_zero`)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds {bound}, got {text}")
    return value


def positive_seconds(text: str) -> float:
    return seconds(text)


def seconds_or_zero(text: str) -> float:
    return seconds(text, allow_zero=True)
