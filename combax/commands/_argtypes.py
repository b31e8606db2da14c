"""argparse ``type=`` converters shared by the subcommands: each rejects bad text with a message that names the rule."""

from __future__ import annotations

import argparse


def positive(kind):
    """A converter to ``kind`` (int or float) that accepts only values > 0."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a positive {kind.__name__}; got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0; got {text}")
        return value

    return parse


def non_negative_int(text: str) -> int:
    """An int >= 0 (epochs, for instance, where 0 means skip)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0; got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0; got {text}")
    return value
