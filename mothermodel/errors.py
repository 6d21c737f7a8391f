"""Error types shared by every layer.

`UserError` is bad input: the CLI prints its one-line message and exits 2, and
the code that raised it has written nothing. Anything else is an internal
failure (exit 1).
"""


class UserError(Exception):
    """Bad input from the user (exit code 2). The message names the field or file."""

    exit_code = 2


class CommandFailed(Exception):
    """A command could not do its work, through no fault of its input (exit 1, one line)."""

    exit_code = 1


class RegistryBusy(CommandFailed):
    """The registry stayed locked by other processes past the lock timeout."""

    exit_code = 1


class IntegrityError(CommandFailed):
    """A stored file no longer matches the hash the registry recorded for it (exit 1)."""

    exit_code = 1


class StaleRead(CommandFailed):
    """A read-modify-write found that another process recorded a newer version since it read (the caller
    re-reads and tries again; exit 1 only when that keeps happening)."""

    exit_code = 1
