"""The terminal while ``broker top`` runs: the alternate screen, no echo,
keys read one at a time; everything restored on the way out, also on
Ctrl-C or an error.

Plain ANSI escapes (ECMA-48, and xterm's alternate screen 1049) rather than
curses: the view only redraws whole screens.
"""

from __future__ import annotations

import os
import select
import shutil
import sys
import termios
import tty
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

__all__ = ["Terminal", "terminal"]

_ENTER = "\x1b[?1049h\x1b[?25l"  # alternate screen, hide the cursor
_LEAVE = "\x1b[?25h\x1b[?1049l"
_HOME_CLEAR = "\x1b[H\x1b[2J"


class Terminal:
    """Draws whole screens and waits for keys.

    Args:
        out: where screens are written.
        keys_fd: the file descriptor keys come from; ``None`` when there is
            no terminal to read (then only Ctrl-C stops the view).
    """

    def __init__(self, out: TextIO, keys_fd: int | None) -> None:
        self.out = out
        self.keys_fd = keys_fd

    @property
    def width(self) -> int:
        """Columns of the terminal (80 when unknown)."""
        return shutil.get_terminal_size((80, 24)).columns

    def draw(self, lines: Sequence[str]) -> None:
        """Replace the screen with ``lines``."""
        self.out.write(_HOME_CLEAR + "\r\n".join(lines) + "\r\n")
        self.out.flush()

    def wait_key(self, timeout: float) -> str | None:
        """The next key pressed within ``timeout`` seconds, else ``None``."""
        if self.keys_fd is None:
            select.select([], [], [], max(timeout, 0.0))
            return None
        ready, _, _ = select.select([self.keys_fd], [], [], max(timeout, 0.0))
        if not ready:
            return None
        data = os.read(self.keys_fd, 32)
        # End of input (the terminal went away) quits like "q".
        return data.decode(errors="replace")[:1] if data else "q"


@contextmanager
def terminal(stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> Iterator[Terminal]:
    """A :class:`Terminal` on stdin/stdout, set up and restored around the block."""
    fd = stdin.fileno() if stdin.isatty() else None
    saved = termios.tcgetattr(fd) if fd is not None else None
    if fd is not None:
        tty.setcbreak(fd)  # keys without Enter, no echo; Ctrl-C still signals
    stdout.write(_ENTER)
    stdout.flush()
    try:
        yield Terminal(stdout, fd)
    finally:
        stdout.write(_LEAVE)
        stdout.flush()
        if fd is not None and saved is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
