"""The one exception type that stages turn into a clean message and exit code 2."""


class UserError(Exception):
    """Bad input from the user (a file, a line, a params key): message, no traceback."""
