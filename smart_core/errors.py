"""User errors: mistakes a person can fix from the message alone.

The command line prints them as one line (no traceback; `--debug` shows it). Everything else is a
bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Base of every error whose message alone tells the user what to do."""


class ConfigError(UserError, ValueError):
    """A config key, value or combination that cannot work (raised before any work starts)."""


class AssetUnavailable(UserError, RuntimeError):
    """A model or reward asset that cannot be found, downloaded or read."""


class RunMismatch(UserError, ValueError):
    """A run folder that holds a different run than the one asked for."""


class InputError(UserError, ValueError):
    """Input data (a MIDI folder, a SoundFont) that cannot be used as it is."""


class MissingInput(UserError, FileNotFoundError):
    """A file or folder the user named (or the set-up should have installed) that is not there."""
