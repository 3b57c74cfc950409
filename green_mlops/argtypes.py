"""Checks of user input, written once: for Python arguments (ValueError) and argparse types (usage error).

The checks themselves (``check_whole``, ``check_seconds``, ``check_number``, ``validate_interval``) live in the
bottom layer, :mod:`green_mlops.meter`, which checks its own input with them; they are re-exported here, the
one place the rest of the package imports them from. Every message names what a valid value looks like.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from green_mlops.meter import check_number, check_seconds, check_whole, validate_interval

__all__ = ["DefaultsHelpFormatter", "check_number", "check_seconds", "check_whole", "interval", "nonneg_seconds",
           "port", "positive_int"]


def _argtype(parse: Callable[[str], Any], check: Callable[[Any], Any], what: str) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        try:
            return check(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc).replace("value must be", "must be")) from None
    return convert


nonneg_seconds = _argtype(float, lambda v: check_seconds("value", v), "a number of seconds (e.g. 5)")
positive_int = _argtype(int, lambda v: check_whole("value", v, 1), "a whole number")


def interval(text: str) -> float:
    """argparse type: a sampling interval the meter accepts."""
    try:
        return validate_interval(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def port(text: str) -> int:
    """argparse type: a TCP port, 1–65535, or 0 for a free one."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (e.g. 9464)") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 1 to 65535 (0 picks a free one), got {text!r}")
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
