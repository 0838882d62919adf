"""One exception type for everything a user can cause; the CLI prints it as one line."""

import re

# FAISS prefixes its messages with the C++ function and source line, which tell a user nothing.
FAISS_ERROR_PLACE = re.compile(r"^Error in .*? at \S+:\d+: ")


class L2VError(Exception):
    """A problem with the user's input or environment, explained in one line."""


def write_failed(path: object, reason: str) -> L2VError:
    """The error for a write to an index that failed (a full disk, a file size limit, no permission): the
    writers undo what they started, so the index is as its last completed save left it."""
    return L2VError(f"cannot write {path}: {reason}; the index is intact as of its last save")


def one_line(exc: BaseException) -> str:
    """An unexpected error's message as one line a user can read (FAISS's C++ source place dropped)."""
    return FAISS_ERROR_PLACE.sub("", str(exc).partition("\n")[0])
