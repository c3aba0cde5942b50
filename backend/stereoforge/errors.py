"""Errors a user can act on.

Anything raised as :class:`InputError` is the user's to fix (a wrong path, a mismatched depth file, a zero
focal length). The CLI prints its message on one line and exits with status 2; nothing is printed as a
traceback.
"""


class StereoForgeError(Exception):
    """Base class of the errors StereoForge raises on purpose."""


class InputError(StereoForgeError):
    """Bad input: the message names the value or file and says what to do."""


class Cancelled(StereoForgeError):
    """The job was cancelled; every frame finished so far stays on disk."""
