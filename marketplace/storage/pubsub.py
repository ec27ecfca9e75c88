"""Publish/subscribe over a Kubo daemon's pubsub RPC (the wire format of Kubo ≥ 0.11).

Topics travel multibase-encoded (base64url, ``u`` prefix) in the ``arg`` parameter; a published
message is the multipart body of ``pubsub/pub``; ``pubsub/sub`` is a streaming POST answering one
JSON object per line whose ``data``, ``seqno`` and ``topicIDs`` are multibase-encoded and whose
``from`` is the sender's peer ID. Pubsub must be enabled in the daemon (``Pubsub.Enabled``; the
fixtures and :func:`~marketplace.storage.kubo_daemon.start_kubo` do it).

Messages are untrusted: a peer ID says which node relayed a message first, not who wrote it, so
anything acted upon must carry its own signature (see :mod:`marketplace.crypto.announce`). Sizes
are bounded both ways; an oversize or malformed incoming line is dropped and logged.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType

import requests

from marketplace.errors import StorageError, StoreUnreachableError
from marketplace.storage.kubo_rpc import KuboCommandError, KuboRpc, short_cause

log = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024


def multibase_encode(raw: bytes) -> str:
    """Multibase base64url without padding (prefix ``u``), as Kubo's pubsub RPC wants."""
    return "u" + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def multibase_decode(text: str) -> bytes:
    """Inverse of :func:`multibase_encode`; :class:`ValueError` for anything else."""
    if not text.startswith("u"):
        raise ValueError(f"expected multibase base64url ('u' prefix), got {text[:10]!r}")
    body = text[1:]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


@dataclass(frozen=True)
class PubsubMessage:
    """One received message. ``from_peer`` is the libp2p peer that published it (not a signer)."""

    topic: str
    data: bytes
    from_peer: str
    seqno: bytes


class Subscription:
    """An open subscription: iterate it (once) for messages; :meth:`close` (any thread) ends it.

    Iteration ends (without an error) once closed; it raises :class:`StoreUnreachableError` if the
    daemon goes away while the subscription is open.
    """

    def __init__(
        self, client: PubsubClient, topic: str, response: requests.Response, max_size: int
    ) -> None:
        self.topic = topic
        self._client = client
        self._response = response
        self._max_line = 4 * max_size // 3 + 1024  # base64 growth plus the JSON around it
        self._closed = threading.Event()
        self._messages = self._receive()

    def __iter__(self) -> Iterator[PubsubMessage]:
        return self._messages  # one stream per subscription, however often it is iterated

    def _receive(self) -> Iterator[PubsubMessage]:
        try:
            for line in self._lines():
                message = self._parse(line)
                if message is not None:
                    yield message
        except (requests.RequestException, OSError, AttributeError, ValueError) as exc:
            # AttributeError/ValueError: urllib3 reading from a response closed by another thread.
            if self._closed.is_set():
                return
            raise StoreUnreachableError(
                f"pubsub subscription to {self.topic!r} on {self._client.api_multiaddr} broke "
                f"({short_cause(exc)}): is the daemon running? subscribe again"
            ) from exc
        if not self._closed.is_set():
            raise StoreUnreachableError(
                f"pubsub subscription to {self.topic!r} on {self._client.api_multiaddr} was ended "
                "by the daemon: is it still running? subscribe again"
            )

    def _lines(self) -> Iterator[bytes]:
        """Newline-separated lines, each bounded: an oversize line is skipped, never buffered."""
        buffer = bytearray()
        skipping = False
        for chunk in self._response.iter_content(chunk_size=None):
            if self._closed.is_set():
                return
            buffer += chunk
            while (cut := buffer.find(b"\n")) >= 0:
                line = bytes(buffer[:cut])
                del buffer[: cut + 1]
                if skipping:
                    skipping = False  # the tail of the oversize line just ended
                elif line.strip():
                    yield line
            if len(buffer) > self._max_line:
                log.warning("dropping an oversize pubsub message on %r", self.topic)
                buffer.clear()
                skipping = True

    def _parse(self, line: bytes) -> PubsubMessage | None:
        try:
            obj = json.loads(line)
            data = multibase_decode(obj["data"])
            topics = [multibase_decode(t).decode() for t in obj.get("topicIDs") or []]
            message = PubsubMessage(
                topic=topics[0] if topics else self.topic,
                data=data,
                from_peer=str(obj["from"]),
                seqno=multibase_decode(obj["seqno"]) if obj.get("seqno") else b"",
            )
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            log.warning("dropping a malformed pubsub message on %r: %s", self.topic, exc)
            return None
        if len(message.data) > self._client.max_message_size:
            log.warning("dropping an oversize pubsub message on %r", self.topic)
            return None
        return message

    def close(self) -> None:
        """End the subscription (closes the streaming request); idempotent, thread-safe."""
        if self._closed.is_set():
            return
        self._closed.set()
        # Shutting the socket down wakes a reader blocked in another thread; close() alone may not.
        connection = getattr(self._response.raw, "connection", None)
        sock = getattr(connection, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._response.close()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class PubsubClient(KuboRpc):
    """Publish to and subscribe on pubsub topics of one Kubo daemon.

    ``max_message_size`` bounds what :meth:`publish` sends and what a subscription yields.
    """

    def __init__(
        self,
        api: str,
        *,
        timeout: float = 30.0,
        retries: int = 2,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        super().__init__(api, timeout=timeout, retries=retries)
        self.max_message_size = max_message_size

    def publish(self, topic: str, data: bytes) -> None:
        """Publish ``data`` on ``topic`` (at most ``max_message_size`` bytes)."""
        if len(data) > self.max_message_size:
            raise StorageError(
                f"pubsub message of {len(data)} bytes exceeds max_message_size="
                f"{self.max_message_size}: publish a CID of the content instead"
            )
        boundary = uuid.uuid4().hex
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="msg"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}

        def attempt() -> None:
            try:
                self._post(
                    "pubsub/pub", {"arg": multibase_encode(topic.encode())}, data=body,
                    headers=headers,
                ).close()  # fmt: skip
            except KuboCommandError as exc:
                raise StorageError(
                    f"pubsub publish on {self.name} failed: {exc} (is Pubsub.Enabled set?)"
                ) from None

        self._retrying("pubsub/pub", attempt)

    def subscribe(self, topic: str) -> Subscription:
        """Subscribe to ``topic``; the subscription is live when this returns."""

        def attempt() -> requests.Response:
            try:
                return self._post(
                    "pubsub/sub", {"arg": multibase_encode(topic.encode())}, stream=True,
                    no_read_timeout=True,  # a quiet topic is not a dead daemon
                )  # fmt: skip
            except KuboCommandError as exc:
                raise StorageError(
                    f"pubsub subscribe on {self.name} failed: {exc} (is Pubsub.Enabled set?)"
                ) from None

        return Subscription(
            self, topic, self._retrying("pubsub/sub", attempt), self.max_message_size
        )

    def peers(self, topic: str) -> list[str]:
        """Peer IDs this daemon knows to be subscribed to ``topic``."""
        try:
            answer = self._call(
                "pubsub/peers", "pubsub/peers", {"arg": multibase_encode(topic.encode())}
            )
        except KuboCommandError as exc:
            raise StorageError(f"pubsub peers on {self.name} failed: {exc}") from None
        return list((answer or {}).get("Strings") or [])

    def wait_for_peers(self, topic: str, count: int = 1, *, timeout: float = 30.0) -> list[str]:
        """Block until ``count`` peers subscribe to ``topic`` (gossip needs a moment to spread)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.peers(topic)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise StorageError(
                    f"only {len(found)} of {count} peers subscribed to {topic!r} within "
                    f"{timeout:.0f}s: are the daemons connected (swarm connect)?"
                )
            time.sleep(0.1)
