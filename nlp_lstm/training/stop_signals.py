"""SIGINT and SIGTERM during training: the loop finishes its step, saves a checkpoint and
stops, so the run can be resumed; a second signal stops it at once."""

from __future__ import annotations

import contextlib
import logging
import signal
from typing import Optional

log = logging.getLogger("nlp_lstm")


class StopSignals:
    def __init__(self) -> None:
        # What asked the run to stop ("SIGINT", "SIGTERM", or another rank's signal), or None.
        self.received: Optional[str] = None

    @contextlib.contextmanager
    def handled(self):
        """The handlers installed for the block; the ones before it back after it."""
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        for sig in previous:
            signal.signal(sig, self._on_signal)
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum, frame) -> None:
        if self.received is not None:  # a second Ctrl-C means: stop now
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name
        log.warning(f"{self.received}: finishing this step, then saving a checkpoint (again to abort)")
