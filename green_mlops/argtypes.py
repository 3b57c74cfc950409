"""Checks of user input, written once: for Python arguments (ValueError) and argparse types (usage error).

The checks themselves (``check_whole``, ``check_seconds``, ``check_number``, ``validate_interval``) live in the
bottom layer, :mod:`green_mlops.meter`, which checks its own input with them; they are re-exported here, the
one place the rest of the package imports them from. Every numeric command-line option uses one of the
argparse types below. Every message names what a valid value looks like.
"""
from __future__ import annotations

import argparse
import math
import numbers
from collections.abc import Callable
from typing import Any

from green_mlops.meter import check_number, check_seconds, check_whole, validate_interval

__all__ = ["DefaultsHelpFormatter", "check_fraction", "check_number", "check_seconds", "check_whole", "finite",
           "fraction", "interval", "nonneg_int", "nonneg_seconds", "number", "or_auto", "parse", "port", "positive_int",
           "positive_seconds", "seconds", "whole"]


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


def whole(minimum: int, example: str = "3") -> Callable[[str], int]:
    """argparse type: a whole number ≥ ``minimum``."""
    return _argtype(int, lambda v: check_whole("value", v, minimum), f"a whole number (e.g. {example})")


def number(*, positive: bool, example: str) -> Callable[[str], float]:
    """argparse type: a finite number > 0 (``positive``) or ≥ 0."""
    return _argtype(float, lambda v: check_number("value", v, positive=positive, example=example),
                    f"a number (e.g. {example})")


def seconds(*, positive: bool, example: str = "5") -> Callable[[str], float]:
    """argparse type: a finite number of seconds > 0 (``positive``) or ≥ 0."""
    return _argtype(float, lambda v: check_seconds("value", v, positive=positive, example=example),
                    f"a number of seconds (e.g. {example})")


def check_fraction(name: str, value: Any, *, open_low: bool = False, example: str = "0.5",
                   error: type[Exception] = ValueError) -> float:
    """``value`` as float if it lies in [0, 1] ((0, 1] when ``open_low``); else ``error``."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (0 < value <= 1 if open_low else 0 <= value <= 1):
        raise error(f"{name} must be a fraction {'above 0 and at most' if open_low else 'from 0 to'} 1 "
                         f"(e.g. {example}); got {value!r}")
    return float(value)


def fraction(*, open_low: bool = False, example: str = "0.5") -> Callable[[str], float]:
    """argparse type: a number in [0, 1], or (0, 1] when ``open_low``."""
    return _argtype(float, lambda v: check_fraction("value", v, open_low=open_low, example=example),
                    f"a fraction (e.g. {example})")


def or_auto(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """argparse type: the word ``auto`` (a value the program works out itself), or what ``convert`` accepts."""
    def parse_auto(text: str) -> Any:
        return "auto" if text.strip().lower() == "auto" else convert(text)
    return parse_auto


def finite(example: str = "0") -> Callable[[str], float]:
    """argparse type: any finite number (negative too), e.g. a clock offset."""
    def check(v: float) -> float:
        if not math.isfinite(v):
            raise ValueError(f"value must be a finite number (e.g. {example}); got {v!r}")
        return v
    return _argtype(float, check, f"a number (e.g. {example})")


nonneg_seconds = seconds(positive=False)
positive_seconds = seconds(positive=True)
positive_int = whole(1)
nonneg_int = whole(0, "0")


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


def parse(parser: argparse.ArgumentParser, argv: Any) -> argparse.Namespace | int:
    """``parser.parse_args(argv)``, or the exit code argparse chose (2 after saying why, 0 after ``--help``).

    So ``main(argv)`` returns a code for bad input instead of raising SystemExit in the caller's process.
    """
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 2


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
