"""Progress bars on a terminal, nothing when the output is a log (a file, a pipe, CI).

tqdm redraws its bar with carriage returns; in a log that is kilobytes of frames. Code that
wants a bar calls `progress_bar`; what must reach a log anyway (one line per epoch) is printed
with `say`.
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


def on_terminal() -> bool:
    return sys.stderr.isatty()


def progress_bar(iterable=None, *, enabled: bool = True, **kwargs):
    """A tqdm bar on stderr, shown only when `enabled` and stderr is a terminal."""
    return tqdm(iterable, disable=not (enabled and on_terminal()), file=sys.stderr, **kwargs)


def say(message: str) -> None:
    """One line on stderr that does not break a running bar."""
    tqdm.write(message, file=sys.stderr)
