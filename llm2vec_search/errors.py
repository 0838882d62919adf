"""One exception type for everything a user can cause; the CLI prints it as one line."""


class L2VError(Exception):
    """A problem with the user's input or environment, explained in one line."""
