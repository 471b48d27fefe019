"""How a run stops, and what stopping does to the requests the workers are on (batchrun.run.executor).

Interruption (SIGINT, or SIGTERM from CI or Kubernetes: the same path): the producer stops at
once; workers waiting for a slot, and queue requests already journaled, stop waiting (they keep
running remotely and are re-attached by the next run); direct calls and submits still on the wire
get `GRACE_S` to finish and be written. No retry starts once the run is stopping (interrupted, or
halted by a gate or the budget): a request sleeping before its next attempt, or failing its
current one, ends there. After a halt it is recorded with the error it had; after an interrupt it
has no record and the resume sends it (see `Stop.stop_retry`). A second SIGINT, while the run
still waits, cancels the journaled queue requests remotely; a second SIGTERM changes nothing (a
supervisor repeating itself is not asking to throw away paid-for work; it sends SIGKILL when its
grace period ends, and the journal survives that).

A gate or the budget halts the run (`Stop.halt`): nothing new is sent, the requests on the wire
finish and are written, and the run is resumable like an interrupted one.
"""

from __future__ import annotations

import signal
import time

import anyio
import anyio.abc

from batchrun import signals
from batchrun.output.journal import Journal
from batchrun.run.inflight import Active
from batchrun.run.progress import Progress

__all__ = ["GRACE_S", "Interrupts", "Stop"]

GRACE_S = 3.0  # after Ctrl-C or SIGTERM, how long requests on the wire may take to finish and be written


class Stop:
    """A run's stop state: the requests workers are on (`active`), the producer's scope, and
    whether (and why) the run is stopping. The executor registers each request it works on."""

    def __init__(self, progress: Progress, journal: Journal) -> None:
        self.progress = progress
        self.journal = journal  # its queue requests decide what the interrupt message offers
        self.active: dict[int, Active] = {}  # the requests workers are on, by id() of the Active
        self.producer = anyio.CancelScope()  # the plan walk: cancelled by the first stop
        self.stopping = False  # interrupted: Ctrl-C or SIGTERM
        self.signal: int = signal.SIGINT  # the first signal that interrupted the run
        self.halted = False  # a gate or the budget stopped the run: no new requests, in-flight ones finish
        self.halt_reason = ""
        self.cancel_remote = False  # a second Ctrl-C: cancel the journaled queue requests remotely

    @property
    def over(self) -> bool:
        """Interrupted or halted: nothing new is sent and no retry starts."""
        return self.stopping or self.halted

    def halt(self, reason: str) -> None:
        """A gate or the budget says stop: send nothing new (requests waiting for a slot stop waiting),
        let the requests on the wire finish and be written. Resumable like an interrupt."""
        if self.halted:
            return
        self.halted = True
        self.halt_reason = reason
        self.progress.message(f"batchrun: {reason}; finishing the requests in flight (no new retries)")
        self.producer.cancel()
        now = time.monotonic()
        for active in list(self.active.values()):
            if active.slot is None:
                active.scope.cancel()
            elif active.retry is not None and now < active.retry.until:
                self.stop_retry(active)

    def halt_before_start(self, reason: str) -> None:
        """A gate the output already breaches: nothing is sent. Unlike `halt`, the plan is still
        walked, so the summary counts what the output settles and open intents of settled ids are
        closed; every request to do is drained unsent (the next run sends it)."""
        self.halted = True
        self.halt_reason = reason
        self.progress.message(f"batchrun: {reason}")

    def stop_retry(self, active: Active) -> None:
        """The run is stopping: `active`'s next attempt does not start. After a gate or the budget
        stopped the run, the request ends with the error it had (the run is over; its record says
        why). After Ctrl-C or SIGTERM it gets no record, as any request the interrupt cut short:
        the resume sends it. A journaled queue request's status or result GET just stops waiting
        (it stays journaled: the next run collects it)."""
        assert active.retry is not None
        if self.halted and not self.stopping and not (active.journaled and active.retry.follows):
            active.retry_stopped = True
        active.scope.cancel()

    def interrupt(self, signum: int = signal.SIGINT) -> None:
        """First Ctrl-C or SIGTERM: stop submitting; stop waiting on what is safe to leave; grace for
        the rest. A second Ctrl-C also cancels the journaled queue requests remotely."""
        if self.stopping:
            if signum == signal.SIGINT:
                self.cancel_remote = True
                for active in list(self.active.values()):
                    active.scope.cancel()
            return
        self.stopping = True
        self.signal = signum
        self.producer.cancel()
        now = time.monotonic()
        for active in list(self.active.values()):
            if active.slot is not None and active.retry is not None and now < active.retry.until:
                self.stop_retry(active)
            elif active.slot is None or active.journaled:
                active.scope.cancel()

    def message(self, signum: int) -> str:
        """What the first signal does, said as it happens. A second Ctrl-C is offered only while the
        run still waits for requests on the wire: with none, the run ends at once (its summary then
        says which queue requests keep running remotely), so there is no moment to press it."""
        wire = [a for a in self.active.values()
                if a.slot is not None and not a.journaled and not a.scope.cancel_called]
        text = f"batchrun: interrupted{signals.label(signum)}; no new requests"
        if not wire:
            return text
        text += f"; waiting up to {GRACE_S:.0f} s for {len(wire)} requests on the wire"
        if signum != signal.SIGINT:
            return text  # a second SIGTERM changes nothing (see the module docstring)
        queue = self.journal.in_flight or any(a.request.mode == "subscribe" for a in wire)
        return text + " (Ctrl-C again to stop waiting" + (" and cancel the queue requests remotely)" if queue else ")")

    async def grace(self) -> None:
        await anyio.sleep(GRACE_S)
        for active in list(self.active.values()):
            active.scope.cancel()

    async def watch_signals(self, tg: anyio.abc.TaskGroup) -> None:
        saved = {s: signal.getsignal(s) for s in signals.STOP_SIGNALS}
        try:
            with anyio.open_signal_receiver(*signals.STOP_SIGNALS) as received:
                try:
                    async for signum in received:
                        self.on_signal(signum, tg)
                finally:
                    # Held from before asyncio removes its handlers (SIGTERM back to SIG_DFL) until
                    # ours are in place: a signal in between killed the process outright.
                    signals.hold()
        finally:
            signals.restore(saved)
            signals.release()

    def on_signal(self, signum: int, tg: anyio.abc.TaskGroup) -> None:
        """A stop signal arrived (in the loop's thread): interrupt, say so, start the grace period."""
        signals.note(signum)
        first = not self.stopping
        self.interrupt(signum)
        if first:
            self.progress.message(self.message(signum))
            tg.start_soon(self.grace)


class Interrupts:
    """Stop signals that arrive outside the run's event loop: the Python API runs a spec in a worker
    thread's loop when the caller's thread already runs one (a notebook), and the caller's thread
    gets the KeyboardInterrupt. It calls `interrupt` in the loop's thread (a blocking portal's
    `call`): the same graceful path as a signal the executor receives itself. An interrupt before
    the executor started is kept and applied when it attaches (nothing is sent then)."""

    def __init__(self) -> None:
        self._stop: Stop | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._pending: list[int] = []
        self._done = False

    def attach(self, stop: Stop, tg: anyio.abc.TaskGroup) -> None:
        self._stop, self._tg = stop, tg
        for signum in self._pending:
            stop.on_signal(signum, tg)
        self._pending.clear()

    def detach(self) -> None:
        self._stop = self._tg = None
        self._done = True

    def interrupt(self, signum: int = signal.SIGINT) -> None:
        if self._stop is not None and self._tg is not None:
            self._stop.on_signal(signum, self._tg)
        elif not self._done:
            signals.note(signum)
            self._pending.append(signum)
