"""Chain notifications by websocket subscription (``eth_subscribe``), polling as the fallback.

A peer's run loop sleeps between steps that found nothing to do. Sleeping a fixed poll interval
puts half an interval, on average, on every reaction to the chain (a round closing, a model
posted). :class:`ChainSubscription` removes that wait: one background thread holds a websocket to
the node (Anvil, Hardhat and most providers serve one: Anvil on its HTTP port), subscribes to the
task's ``logs`` (and/or ``newHeads``), and sets a :class:`Wakeup` on every notification, which the
run loop waits on instead of sleeping.

Polling stays: the loop still wakes after its poll interval when nothing arrives, so a missed
notification delays a step by at most that interval and never loses it (each step reads the
chain's state first). When no websocket is available (the in-process EVM, an HTTP-only endpoint)
or the socket drops, one line says so in the log and the thread retries in the background
(0.5 s doubling to 10 s) while the loop polls; on reconnecting it wakes the loop once, because
the state may have moved while nobody listened.

The transport is the ``websockets`` package's synchronous client; the messages are plain
JSON-RPC (``eth_subscribe`` / ``eth_subscription``).
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

log = logging.getLogger(__name__)

RETRY_MIN_SECONDS = 0.5
RETRY_MAX_SECONDS = 10.0
OPEN_TIMEOUT_SECONDS = 5.0
RECV_SLICE_SECONDS = 0.5  # how often the receive loop looks at the stop flag
MAX_NOTIFICATION_BYTES = 1 << 20


class Wakeup:
    """A sticky wake-up call between threads: :meth:`set` from anywhere; :meth:`wait` returns at
    once if it was set since the previous :meth:`wait`, else when it is set or ``timeout`` passes.

    Two notifications between waits count as one wake: the step that follows reads the chain
    after both, so nothing is lost. ``wakes`` counts waits cut short by a notification.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.wakes = 0

    def set(self) -> None:
        """Wake the waiter (or the next :meth:`wait`, if nobody waits now)."""
        self._event.set()

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds; ``True`` if woken by :meth:`set`."""
        woke = self._event.wait(timeout)
        self._event.clear()
        if woke:
            self.wakes += 1
        return woke


def ws_endpoint(rpc_url: str) -> str | None:
    """The websocket URL a JSON-RPC node serves beside ``rpc_url`` (same host and port, as Anvil
    and Hardhat do), or ``None`` when there is none to try (the in-process EVM)."""
    if rpc_url.startswith(("ws://", "wss://")):
        return rpc_url
    if rpc_url.startswith("http://"):
        return "ws://" + rpc_url.removeprefix("http://")
    if rpc_url.startswith("https://"):
        return "wss://" + rpc_url.removeprefix("https://")
    return None


def logs_filter(address: str, topics: Sequence[str | None]) -> dict[str, Any]:
    """An ``eth_subscribe("logs", …)`` filter: one contract, topics as 0x-hex (``None``: any)."""
    return {"address": address, "topics": list(topics)}


def _default_connect(url: str) -> Any:
    from websockets.sync.client import connect

    return connect(url, open_timeout=OPEN_TIMEOUT_SECONDS, max_size=MAX_NOTIFICATION_BYTES)


class ChainSubscription:
    """Websocket notifications from a node, on a background thread, until :meth:`stop`.

    Parameters
    ----------
    url:
        The node's websocket endpoint (:func:`ws_endpoint`).
    wakeup:
        Set on every head, and on every log ``on_log`` does not decline.
    logs:
        An ``eth_subscribe("logs", …)`` filter (:func:`logs_filter`), or ``None``.
    heads:
        Also subscribe to ``newHeads`` (every block wakes the loop).
    on_log:
        Called with each raw log (JSON-RPC form: hex strings) on the receive thread; returns
        whether the log should wake the loop. Exceptions are logged, never raised.
    connect:
        Opens the websocket, as a context manager (the ``websockets`` sync client by default).
    """

    def __init__(
        self,
        url: str,
        *,
        wakeup: Wakeup,
        logs: Mapping[str, Any] | None = None,
        heads: bool = False,
        on_log: Callable[[Mapping[str, Any]], bool] | None = None,
        connect: Callable[[str], Any] = _default_connect,
        retry_min: float = RETRY_MIN_SECONDS,
        retry_max: float = RETRY_MAX_SECONDS,
    ) -> None:
        if logs is None and not heads:
            raise ValueError("subscribe to logs, heads or both")
        self.url = url
        self.wakeup = wakeup
        self._logs = dict(logs) if logs is not None else None
        self._heads = heads
        self._on_log = on_log
        self._connect = connect
        self._retry_min = retry_min
        self._retry_max = retry_max
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._ws: Any = None
        self._ws_lock = threading.Lock()
        self._ids = itertools.count(1)
        #: Set while subscribed (cleared while the loop is polling).
        self.connected = threading.Event()
        self.notifications = 0
        self.drops = 0  # connections lost or refused

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> ChainSubscription:
        """Start the receive thread (it connects, and reconnects, on its own); returns self."""
        if self._thread is not None:
            raise RuntimeError("ChainSubscription.start() called twice")
        self._thread = threading.Thread(target=self._run, name="chain-subscription", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close the socket and join the thread."""
        self._stopping.set()
        with self._ws_lock:
            ws = self._ws
        if ws is not None:
            try:
                ws.close()
            except Exception as exc:  # closing a broken socket: nothing left to do
                log.debug("closing the chain subscription: %s", exc)
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> ChainSubscription:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- the receive thread ---------------------------------------------------------------
    def _run(self) -> None:
        delay = self._retry_min
        announced_down = False
        while not self._stopping.is_set():
            try:
                with self._connect(self.url) as ws:
                    with self._ws_lock:
                        self._ws = ws
                    self._subscribe(ws)
                    if announced_down:
                        log.warning("chain subscription on %s restored", self.url)
                    announced_down = False
                    delay = self._retry_min
                    self.connected.set()
                    self.wakeup.set()  # the chain may have moved while nobody listened
                    self._receive(ws)
            except Exception as exc:
                if self._stopping.is_set():
                    return
                dropped = self.connected.is_set()
                self.connected.clear()
                self._down(exc, delay, "dropped" if dropped else "unavailable",
                           quiet=announced_down)  # fmt: skip
                announced_down = True
                if dropped:
                    self.wakeup.set()  # poll at once: something may have happened meanwhile
                if self._stopping.wait(delay):
                    return
                delay = min(2 * delay, self._retry_max)
            finally:
                self.connected.clear()
                with self._ws_lock:
                    self._ws = None

    def _down(self, exc: Exception, delay: float, what: str, *, quiet: bool) -> None:
        """Count and log a lost or refused connection: one warning per outage, then debug."""
        self.drops += 1
        cause = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
        level = logging.DEBUG if quiet else logging.WARNING
        log.log(level, "chain subscription on %s %s (%s); polling meanwhile, retrying in %.1fs",
                self.url, what, cause[:200], delay)  # fmt: skip

    def _subscribe(self, ws: Any) -> None:
        wanted: dict[int, str] = {}
        if self._heads:
            wanted[self._request(ws, ["newHeads"])] = "newHeads"
        if self._logs is not None:
            wanted[self._request(ws, ["logs", self._logs])] = "logs"
        while wanted:
            message = self._read(ws)
            if message is None:
                continue
            if message.get("id") in wanted:
                kind = wanted.pop(message["id"])
                if "error" in message or not message.get("result"):
                    raise ConnectionError(f"eth_subscribe {kind} refused: {message.get('error')}")
            else:
                self._dispatch(message)  # a notification ahead of the last answer

    def _request(self, ws: Any, params: list[Any]) -> int:
        rid = next(self._ids)
        ws.send(json.dumps({"jsonrpc": "2.0", "id": rid, "method": "eth_subscribe",
                            "params": params}))  # fmt: skip
        return rid

    def _read(self, ws: Any) -> dict[str, Any] | None:
        """One message, or ``None`` after a quiet slice (so the stop flag is looked at)."""
        try:
            raw = ws.recv(timeout=RECV_SLICE_SECONDS)
        except TimeoutError:
            return None
        try:
            message = json.loads(raw)
        except ValueError:
            log.debug("chain subscription: a non-JSON message dropped")
            return None
        return message if isinstance(message, dict) else None

    def _receive(self, ws: Any) -> None:
        while not self._stopping.is_set():
            message = self._read(ws)
            if message is not None:
                self._dispatch(message)

    def _dispatch(self, message: Mapping[str, Any]) -> None:
        if message.get("method") != "eth_subscription":
            return
        result = (message.get("params") or {}).get("result")
        if not isinstance(result, Mapping):
            return
        self.notifications += 1
        if "topics" not in result:  # a new head
            self.wakeup.set()
            return
        wake = True
        if self._on_log is not None:
            try:
                wake = self._on_log(result)
            except Exception:
                log.exception("chain subscription: on_log raised")
        if wake:
            self.wakeup.set()
