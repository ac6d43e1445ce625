"""The one progress display of molrg: a line with a bar, counts and an ETA, on stderr."""

from __future__ import annotations

import sys
import time


class Progress:
    """A plain-text progress line with ETA on stderr (no dependency).

    ``update(k)`` adds k finished items; a redraw happens at most twice a second and at the
    end. ``skip(k)`` counts items found already done (a resumed sweep): they show in the
    count but not in the rate, so the ETA covers only the work that is left.
    """

    def __init__(self, total: int, desc: str, *, stream=None, enabled: bool = True):
        self.total, self.desc, self.done = max(int(total), 1), desc, 0
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.t0 = time.perf_counter()
        self._last = 0.0
        self._skipped = 0

    def skip(self, k: int, note: str = "") -> None:
        self._skipped += k
        self.update(k, note)

    def update(self, k: int = 1, note: str = "") -> None:
        self.done += k
        now = time.perf_counter()
        if not self.enabled or (now - self._last < 0.5 and self.done < self.total):
            return
        self._last = now
        el = now - self.t0
        worked = self.done - self._skipped
        eta = el / worked * (self.total - self.done) if worked > 0 else float("nan")
        frac = self.done / self.total
        bar = "#" * int(20 * frac) + "." * (20 - int(20 * frac))
        end = "\n" if self.done >= self.total else "\r"
        print(f"  {self.desc} [{bar}] {self.done}/{self.total} {el:5.1f}s elapsed, ETA {eta:5.1f}s {note}",
              end=end, file=self.stream, flush=True)
