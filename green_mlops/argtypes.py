"""argparse types shared by the command-line modules: errors name what a valid value looks like."""
from __future__ import annotations

import argparse
import math

from green_mlops.meter.meter import validate_interval


def nonneg_seconds(text: str) -> float:
    """argparse type: 0 or more seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (e.g. 5)") from None
    if not value >= 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, got {text!r}")
    return value


def interval(text: str) -> float:
    """argparse type: a sampling interval the meter accepts."""
    try:
        return validate_interval(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_int(text: str) -> int:
    """argparse type: a whole number ≥ 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """``--help`` shows every option's default: appended as "(default: …)" unless the help already says it.

    Unlike argparse's ArgumentDefaultsHelpFormatter it does not print "(default: None)" or "(default: False)":
    an option without a value says in its own help what happens when it is left out.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (not action.option_strings or "default" in text.lower() or action.default is None
                or action.default is False or action.default is argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"
