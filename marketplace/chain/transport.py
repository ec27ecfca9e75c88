"""JSON-RPC over plain HTTP with one kept-alive ``http.client`` connection per thread.

web3's ``HTTPProvider`` posts through ``requests``: about 0.4 ms of CPU a request on this
machine (session, adapter, urllib3 pool, environment proxy lookup), six times what the same
keep-alive POST costs through the standard library, and a peer makes several requests every
round. :class:`KeepAliveSessionManager` stands in for web3's session manager only where that
layer adds nothing (``http://`` endpoints with no proxy configured for them); everything above it
is web3's own (request encoding, retries of allow-listed methods, caching, response decoding),
and failures surface as the ``requests`` exceptions web3 raises there today, so callers and
web3's retry policy see no difference.

A connection the server closed while idle is noticed before reuse (it reads as readable) and
replaced; a request is never sent twice.
"""

from __future__ import annotations

import http.client
import select
import threading
import weakref
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.utils import get_environ_proxies
from web3 import HTTPProvider

__all__ = ["KeepAliveSessionManager", "use_keep_alive"]


class KeepAliveSessionManager:
    """``make_post_request`` for web3's ``HTTPProvider`` over per-thread ``http.client``
    connections; any other endpoint (``https://``, behind a proxy) goes to ``fallback``."""

    def __init__(self, fallback: Any) -> None:
        self._fallback = fallback
        self._local = threading.local()
        self._direct: dict[str, bool] = {}
        # Every connection opened, with the thread that owns it: those of finished threads are
        # closed when the next connection is opened, all of them on close() and when the
        # manager (its provider) is collected.
        self._lock = threading.Lock()
        self._opened: dict[int, tuple[threading.Thread, http.client.HTTPConnection]] = {}
        weakref.finalize(self, _close_all, self._opened)

    def close(self) -> None:
        """Close every kept-alive connection (they reopen on the next request)."""
        with self._lock:
            _close_all(self._opened)

    def __getattr__(self, name: str) -> Any:
        # Everything but POSTs (e.g. web3's session cache helpers) stays web3's.
        return getattr(self._fallback, name)

    def make_post_request(self, endpoint_uri: str, data: bytes, **kwargs: Any) -> bytes:
        """POST ``data`` to ``endpoint_uri``; the response body. Raises ``requests``'
        ``ConnectionError``, ``Timeout`` or ``HTTPError`` as web3's own manager would."""
        if not self._is_direct(endpoint_uri) or kwargs.get("stream"):
            return bytes(self._fallback.make_post_request(endpoint_uri, data, **kwargs))
        timeout = kwargs.get("timeout", 10.0)
        if isinstance(timeout, tuple):  # (connect, read): one socket timeout covers both
            timeout = max(t for t in timeout if t is not None)
        headers = dict(kwargs.get("headers") or {"Content-Type": "application/json"})
        conn = self._connection(endpoint_uri, timeout)
        parts = urlsplit(endpoint_uri)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            conn.request("POST", path, body=data, headers=headers)
            response = conn.getresponse()
            body = response.read()
        except TimeoutError as exc:
            self._drop(endpoint_uri)
            raise requests.Timeout(f"{endpoint_uri}: {exc}") from exc
        except (OSError, http.client.HTTPException) as exc:
            self._drop(endpoint_uri)
            raise requests.ConnectionError(f"{endpoint_uri}: {type(exc).__name__}: {exc}") from exc
        if response.status >= 400:
            raise requests.HTTPError(f"{response.status} {response.reason} for url: {endpoint_uri}")
        if response.will_close:
            self._drop(endpoint_uri)
        return body

    def _is_direct(self, endpoint_uri: str) -> bool:
        """Plain http with no proxy for it in the environment (read once per endpoint)."""
        direct = self._direct.get(endpoint_uri)
        if direct is None:
            parts = urlsplit(endpoint_uri)
            plain = parts.scheme == "http" and parts.hostname is not None
            direct = plain and not get_environ_proxies(endpoint_uri)
            self._direct[endpoint_uri] = direct
        return direct

    def _connection(self, endpoint_uri: str, timeout: float) -> http.client.HTTPConnection:
        conns: dict[str, http.client.HTTPConnection] = self._local.__dict__.setdefault("conns", {})
        conn = conns.get(endpoint_uri)
        if conn is not None and _closed_by_peer(conn):
            self._drop(endpoint_uri)
            conn = None
        if conn is None:
            parts = urlsplit(endpoint_uri)
            conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
            conns[endpoint_uri] = conn
        if id(conn) not in self._opened:  # new, or reopened after close()
            self._register(conn)
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def _register(self, conn: http.client.HTTPConnection) -> None:
        """Track ``conn`` for this thread; close those of threads that have finished."""
        with self._lock:
            finished = [k for k, (thread, _) in self._opened.items() if not thread.is_alive()]
            closing = [self._opened.pop(k)[1] for k in finished]
            self._opened[id(conn)] = (threading.current_thread(), conn)
        for old in closing:
            old.close()

    def _drop(self, endpoint_uri: str) -> None:
        conns = self._local.__dict__.get("conns", {})
        conn = conns.pop(endpoint_uri, None)
        if conn is not None:
            conn.close()
            with self._lock:
                self._opened.pop(id(conn), None)


def _close_all(opened: dict[int, tuple[threading.Thread, http.client.HTTPConnection]]) -> None:
    for _, conn in list(opened.values()):
        conn.close()
    opened.clear()


def _closed_by_peer(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle kept-alive connection was closed by the server: its socket reads as
    readable (EOF, or bytes nobody asked for) before any request was sent on it."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def use_keep_alive(provider: HTTPProvider) -> None:
    """Route ``provider``'s POSTs through a :class:`KeepAliveSessionManager`."""
    manager = provider._request_session_manager
    if not isinstance(manager, KeepAliveSessionManager):
        provider._request_session_manager = KeepAliveSessionManager(manager)  # type: ignore[assignment]
