"""The one progress display of molrg: a line with a bar, counts and an ETA, on stderr."""

from __future__ import annotations

import sys
import time


def _is_tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


class Progress:
    """A plain-text progress line with ETA on stderr (no dependency).

    ``update(k)`` adds k finished items. On a terminal the line redraws in place (``\\r``)
    at most twice a second and at the end. On anything else (a log file, a pipe, CI) it
    writes whole lines instead, one every ``interval`` seconds or every tenth of the total,
    whichever comes first, and the final one, so a log holds a readable, short history.
    ``skip(k)`` counts items found already done (a resumed sweep): they show in the count
    but not in the rate, so the ETA covers only the work that is left.
    """

    def __init__(self, total: int, desc: str, *, stream=None, enabled: bool = True,
                 interval: float = 5.0):
        self.total, self.desc, self.done = max(int(total), 1), desc, 0
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = _is_tty(self.stream)
        self.interval = interval
        self.t0 = time.perf_counter()
        self._last = self.t0
        self._last_tenth = 0
        self._skipped = 0

    def skip(self, k: int, note: str = "") -> None:
        self._skipped += k
        self.update(k, note)

    def update(self, k: int = 1, note: str = "") -> None:
        self.done += k
        if not self.enabled:
            return
        now = time.perf_counter()
        final = self.done >= self.total
        tenth = 10 * self.done // self.total
        if self.tty:
            due = now - self._last >= 0.5
        else:
            due = now - self._last >= self.interval or tenth > self._last_tenth
        if not (due or final):
            return
        self._last, self._last_tenth = now, tenth
        el = now - self.t0
        worked = self.done - self._skipped
        # the rate counts only the items computed here: skipped ones took no time
        eta = el / worked * (self.total - self.done) if worked > 0 else float("nan")
        frac = min(self.done / self.total, 1.0)
        bar = "#" * int(20 * frac) + "." * (20 - int(20 * frac))
        end = "\n" if final or not self.tty else "\r"
        print(f"  {self.desc} [{bar}] {self.done}/{self.total} {el:5.1f}s elapsed, ETA {eta:5.1f}s {note}",
              end=end, file=self.stream, flush=True)
