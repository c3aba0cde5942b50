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


def disk_error(exc: OSError) -> InputError:
    """An operating-system error met while reading or writing a shot, as one line that says what to do.

    A full disk, a read-only one, a folder that may not be written or a file where a folder belongs is the
    user's to fix, like any other bad input; the frames finished before it stay, so the same command resumes.
    """
    import errno

    advice = {
        errno.ENOSPC: "free some disk space, then run the same command again to resume",
        errno.EDQUOT: "free some of your disk quota, then run the same command again to resume",
        errno.EFBIG: "the file grew past the size this system allows a process to write; raise the limit "
                     "(ulimit -f) or free space, then run the same command again",
        errno.EROFS: "that disk is read-only; give a folder on a writable disk",
        errno.EACCES: "check the permissions of that file or folder, or give another folder",
        errno.EPERM: "check the permissions of that file or folder, or give another folder",
        errno.ENOTDIR: "a part of that path is a file where a folder belongs; move the file away",
        errno.EISDIR: "a folder is where a file belongs; move the folder away",
        errno.EEXIST: "a file is where a folder belongs; move the file away",
    }.get(exc.errno, "check that the disk has space and that the folder may be written, then run again")
    where = f" '{exc.filename}'" if exc.filename else ""
    return InputError(f"cannot write{where}: {exc.strerror or exc}; {advice}")
