"""Errors raised for bad input. The CLI turns them into one line on stderr and exit code 2."""

from __future__ import annotations


class SapsError(Exception):
    """Base class of the project's own, user-facing errors."""


class ConfigError(SapsError, ValueError):
    """A bad value in a config, a CLI argument or a widget: names the field and what is allowed."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class DataError(SapsError, FileNotFoundError):
    """A data set's files are missing or malformed: names the paths searched and how to get them."""


class StoreError(SapsError):
    """The run store or a checkpoint is unreadable (corrupt, truncated, altered)."""


class NumericalError(SapsError, ArithmeticError):
    """Non-finite values met during training, curvature or unlearning."""
