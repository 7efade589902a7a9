"""Progress and cancel callbacks shared by the CLI and the GUI workers.

Every long-running logic function takes ``progress`` and ``cancel``:

* ``progress(fraction, message)`` with ``fraction`` in [0, 1];
* ``cancel()`` returns True when the user asked to stop; the function then
  raises :class:`medviewer.errors.CancelledError` at the next check.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from medviewer.errors import CancelledError

ProgressFn = Callable[[float, str], None]
CancelFn = Callable[[], bool]


def check_cancel(cancel: CancelFn | None, what: str = "operation") -> None:
    """Raise :class:`CancelledError` if ``cancel`` says so."""
    if cancel is not None and cancel():
        raise CancelledError(f"{what} cancelled")


class Progress:
    """Throttled progress reporting (emits only on a change of >= ``step``).

    Parameters
    ----------
    callback : ProgressFn or None
        Where to report; None makes every call a no-op.
    start, end : float
        The sub-range of the overall progress this stage covers, so a pipeline
        can give each stage its own share.
    step : float
        Minimal change (in overall fraction) between two reports.

    Examples
    --------
    >>> seen = []
    >>> p = Progress(lambda f, m: seen.append(round(f, 2)), step=0.5)
    >>> for i in range(5):
    ...     p(i / 4, "x")
    >>> seen
    [0.0, 0.5, 1.0]
    """

    def __init__(
        self,
        callback: ProgressFn | None,
        start: float = 0.0,
        end: float = 1.0,
        step: float = 0.01,
    ) -> None:
        self.callback = callback
        self.start = start
        self.end = end
        self.step = step
        self._last = -1.0

    def __call__(self, fraction: float, message: str = "") -> None:
        if self.callback is None:
            return
        overall = self.start + (self.end - self.start) * min(max(fraction, 0.0), 1.0)
        if self._last < 0 or overall - self._last >= self.step or fraction >= 1.0 and overall != self._last:
            self._last = overall
            self.callback(overall, message)

    def sub(self, start: float, end: float) -> "Progress":
        """A Progress for the sub-range [start, end] of this one."""
        a = self.start + (self.end - self.start) * start
        b = self.start + (self.end - self.start) * end
        return Progress(self.callback, a, b, self.step)


def console_progress(prefix: str = "") -> ProgressFn:
    """A progress callback drawing a one-line bar on stderr (for the CLI)."""

    def report(fraction: float, message: str) -> None:
        width = 30
        done = int(round(fraction * width))
        bar = "#" * done + "-" * (width - done)
        sys.stderr.write(f"\r{prefix}[{bar}] {fraction * 100:5.1f}% {message[:50]:<50}")
        if fraction >= 1.0:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return report


__all__ = ["ProgressFn", "CancelFn", "check_cancel", "Progress", "console_progress"]
