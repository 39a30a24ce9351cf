"""How often a tracker may send: a share of the wall time, so a copy never slows training by more than that share.

A tracker that sent every run's rows at every epoch would make ``runs × epochs`` calls; a 256-run stack with short
epochs would spend more time talking to MLflow than training. :class:`Pacer` lets sends through while the time spent
sending stays under :data:`SHARE` of the time since the tracker started (plus :data:`GRACE_S`, so the first runs
appear at once), and each run at most every :data:`RUN_EVERY_S`; what is held back goes in the run's next send, one
call for all its rows. A run's end, a flush and a copy of a finished run are always sent.
"""

from __future__ import annotations

import time

SHARE = 0.1  # of the wall time, at most, spent sending rows while runs train
GRACE_S = 1.0  # sending allowed before any wall time has passed (the runs' first rows)
RUN_EVERY_S = 5.0  # a run's rows are sent at most this often while it trains


class Pacer:
    """Accounts for the time spent sending and says when rows may go."""

    def __init__(self, share: float = SHARE, grace_s: float = GRACE_S, run_every_s: float = RUN_EVERY_S) -> None:
        self.share, self.grace_s, self.run_every_s = share, grace_s, run_every_s
        self.started = time.monotonic()
        self.spent = 0.0

    def allows(self, last_sent: float) -> bool:
        """Whether a run last sent at ``last_sent`` (``time.monotonic()``) may send its rows now."""
        now = time.monotonic()
        if now - last_sent < self.run_every_s:
            return False
        return self.spent <= self.share * (now - self.started) + self.grace_s

    def add(self, seconds: float) -> None:
        self.spent += seconds
