"""The one exception type the CLI turns into a one-line message."""


class InterpretError(Exception):
    """A user-facing error: bad input, a missing file, a mismatched cache.

    The message is one line and names the file (and line) at fault.
    """


def located(path, problem: str, line: int | None = None) -> InterpretError:
    """Build an error that reads ``path:line: problem``."""
    where = f"{path}:{line}" if line is not None else f"{path}"
    return InterpretError(f"{where}: {problem}")
