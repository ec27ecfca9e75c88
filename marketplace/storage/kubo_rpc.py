"""Plumbing shared by the Kubo store and pubsub: one HTTP RPC client with timeouts and retries.

Every Kubo RPC call is a POST to ``/api/v0/<command>``. Failures are mapped once, here: connection
refused or reset and 502/503/504 are transient (retried by idempotent callers a bounded number of
times), a timeout or an exhausted retry is :class:`StoreUnreachableError` naming the address and
the fix, and Kubo's own error answers surface as :class:`KuboCommandError` for the caller to turn
into a specific message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import requests

from marketplace.errors import StorageError, StoreUnreachableError

log = logging.getLogger(__name__)

T = TypeVar("T")

_TRANSIENT_STATUS = frozenset({502, 503, 504})


def normalize_api(api: str) -> tuple[str, str]:
    """``(multiaddr, base_url)`` for a Kubo API given as a multiaddr or an ``http://`` URL."""
    api = api.strip().rstrip("/")
    if api.startswith(("http://", "https://")):
        scheme, _, rest = api.partition("://")
        hostport = rest.split("/", 1)[0]
        host, _, port = hostport.rpartition(":")
        if not host or not port.isdigit():
            raise StorageError(f"cannot read IPFS API URL {api!r}: expected http://HOST:PORT")
        proto = "ip6" if host.startswith("[") else ("ip4" if host[0].isdigit() else "dns")
        multiaddr = f"/{proto}/{host.strip('[]')}/tcp/{port}/{scheme}"
        return multiaddr, f"{scheme}://{hostport}"
    parts = api.split("/")
    if len(parts) < 5 or parts[0] != "" or parts[3] != "tcp" or not parts[4].isdigit():
        raise StorageError(
            f"cannot read IPFS API address {api!r}: expected a multiaddr like "
            "/ip4/127.0.0.1/tcp/5001 or a URL like http://127.0.0.1:5001"
        )
    scheme = "https" if parts[5:6] == ["https"] else "http"
    host = f"[{parts[2]}]" if parts[1] == "ip6" else parts[2]
    return api, f"{scheme}://{host}:{parts[4]}"


def _kubo_message(resp: requests.Response) -> str:
    """The ``Message`` of Kubo's JSON error body, or the raw text."""
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip()[:300]
    if isinstance(body, dict) and "Message" in body:
        return str(body["Message"])
    return resp.text.strip()[:300]


class KuboRpc:
    """A Kubo RPC endpoint.

    Parameters
    ----------
    api:
        The API address, as a multiaddr (``/ip4/127.0.0.1/tcp/5001``) or URL
        (``http://127.0.0.1:5001``).
    timeout:
        Seconds to wait for the daemon on each call (connect and each read); also passed to Kubo as
        its own command timeout, so a CID nobody provides fails instead of hanging.
    retries:
        Extra attempts for idempotent calls after a transient failure (not for one-shot streams).
    """

    def __init__(self, api: str, *, timeout: float = 60.0, retries: int = 2) -> None:
        self.api_multiaddr, self.base_url = normalize_api(api)
        self.timeout = timeout
        self.retries = retries
        self.name = f"kubo({self.api_multiaddr})"
        self._session = requests.Session()

    def close(self) -> None:
        """Close pooled connections."""
        self._session.close()

    # --- plumbing ---------------------------------------------------------------------------
    def unreachable(self, cause: object) -> StoreUnreachableError:
        """The one error for 'the daemon did not answer', with the fix."""
        return StoreUnreachableError(
            f"IPFS daemon at {self.api_multiaddr} is unreachable ({cause}): is the daemon running? "
            "start it with `ipfs daemon` (Kubo) or pass --ipfs-api MULTIADDR"
        )

    def _retrying(self, what: str, attempt: Callable[[], T]) -> T:
        """Run ``attempt``, retrying ``TransientRpcError`` with a short backoff."""
        delay = 0.1
        for i in range(self.retries + 1):
            try:
                return attempt()
            except TransientRpcError as exc:
                if i == self.retries:
                    raise exc.error from exc.__cause__
                log.warning("%s on %s failed (%s); retrying", what, self.name, exc.error)
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    def _classify(self, exc: BaseException) -> BaseException:
        """Map a transport exception to ours; wrap transient ones in ``TransientRpcError``."""
        if isinstance(exc, requests.ConnectionError):
            return TransientRpcError(self.unreachable(short_cause(exc)))
        if isinstance(exc, requests.Timeout):
            return StoreUnreachableError(
                f"IPFS daemon at {self.api_multiaddr} did not answer within {self.timeout:.0f}s: "
                "is it overloaded or stuck? retry, or raise the timeout"
            )
        return StorageError(f"IPFS call to {self.api_multiaddr} failed: {short_cause(exc)}")

    def _post(
        self,
        endpoint: str,
        params: dict[str, str] | list[tuple[str, str]],
        *,
        stream: bool = False,
        data: Any = None,
        headers: dict[str, str] | None = None,
        no_read_timeout: bool = False,
    ) -> requests.Response:
        """One POST to ``/api/v0/<endpoint>``; raises ours or ``TransientRpcError``."""
        url = f"{self.base_url}/api/v0/{endpoint}"
        try:
            resp = self._session.post(
                url, params=params, data=data, headers=headers, stream=stream,
                timeout=(min(self.timeout, 10.0), None if no_read_timeout else self.timeout),
            )  # fmt: skip
        except requests.RequestException as exc:
            raise self._classify(exc) from exc
        if resp.status_code == 200:
            return resp
        message = _kubo_message(resp)
        resp.close()
        if resp.status_code in _TRANSIENT_STATUS:
            raise TransientRpcError(
                StorageError(f"IPFS daemon at {self.api_multiaddr} answered {resp.status_code}")
            )
        raise KuboCommandError(message)

    def _call(self, what: str, endpoint: str, params: dict[str, str]) -> Any:
        """A retried control call returning Kubo's JSON; its errors become ``KuboCommandError``."""

        def attempt() -> Any:
            resp = self._post(endpoint, params)
            try:
                return resp.json() if resp.content else None
            except ValueError as exc:
                raise StorageError(
                    f"{what} on {self.name} returned no JSON: {resp.text[:200]!r}"
                ) from exc

        return self._retrying(what, attempt)

    def _kubo_timeout(self) -> str:
        # Kubo gives up a little before we do, so a CID nobody provides yields its clear
        # "context deadline exceeded" (→ ContentNotFoundError) rather than our read timeout.
        return f"{int(self.timeout * 800)}ms"


class TransientRpcError(Exception):
    """A failure worth retrying; ``error`` is what to raise when retries run out (internal)."""

    def __init__(self, error: StorageError) -> None:
        super().__init__(str(error))
        self.error = error


class KuboCommandError(Exception):
    """Kubo answered with an error message: a deterministic failure, not retried (internal)."""


def short_cause(exc: BaseException) -> str:
    """A one-line cause: the innermost reason requests/urllib3 give, without the URL noise."""
    text = str(exc)
    for marker in ("Connection refused", "Connection reset", "Broken pipe", "Read timed out"):
        if marker in text:
            return marker.lower()
    return f"{exc.__class__.__name__}: {text[:160]}"
