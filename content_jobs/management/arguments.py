"""Argument types of the project's commands: a bad value is argparse's usage error (exit 2),
never a traceback."""
import argparse
import math


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return value


def days(text: str) -> float:
    """An age in days: finite, not negative, and one a date can go back by."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days") from None
    if not math.isfinite(value) or value < 0 or value > 36_500:
        raise argparse.ArgumentTypeError(f"{text!r} must be a number of days from 0 to 36500")
    return value
