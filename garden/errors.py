"""User-facing error types: one line that names what was wrong and what is valid."""

import difflib


class GardenError(ValueError):
    """Base of the errors the CLI reports as one line with exit code 2."""


class ConfigError(GardenError):
    """A configuration value is unknown, of the wrong type, or out of range."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; training was stopped (the CLI exits with code 1)."""


def did_you_mean(value: str, choices) -> str:
    """' (did you mean X?)' when a choice is close to `value`, else ''."""
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_choice(what: str, value, choices) -> str:
    """The standard one-line message for a value outside a known set."""
    valid = ", ".join(sorted(str(c) for c in choices))
    return f"unknown {what} {value!r}{did_you_mean(value, choices)}; valid: {valid}"
