"""Error types shared by every layer.

`UserError` is bad input: the CLI prints its one-line message and exits 2, and
the code that raised it has written nothing. Anything else is an internal
failure (exit 1).
"""


class UserError(Exception):
    """Bad input from the user (exit code 2). The message names the field or file."""

    exit_code = 2


class RegistryBusy(Exception):
    """The registry stayed locked by other processes past the lock timeout."""

    exit_code = 1
