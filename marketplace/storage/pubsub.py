"""Publish/subscribe over a Kubo daemon's pubsub RPC (the wire format of Kubo ≥ 0.11).

Topics travel multibase-encoded (base64url, ``u`` prefix) in the ``arg`` parameter; a published
message is the multipart body of ``pubsub/pub``; ``pubsub/sub`` is a streaming POST answering one
JSON object per line whose ``data``, ``seqno`` and ``topicIDs`` are multibase-encoded and whose
``from`` is the sender's peer ID. Pubsub must be enabled in the daemon (``Pubsub.Enabled``; the
fixtures and :func:`~marketplace.storage.kubo_daemon.start_kubo` do it).

Messages are untrusted: a peer ID says which node relayed a message first, not who wrote it, so
anything acted upon must carry its own signature (see :mod:`marketplace.crypto.announce`). Sizes
are bounded both ways; an oversize or malformed incoming line is dropped and logged.

:class:`TopicReceiver` is what a long-running node puts on top: one topic received on a background
thread that survives broken subscriptions and bad messages, and publishes serialized and retried.
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
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType

import requests

from marketplace.errors import StorageError, StoreUnreachableError
from marketplace.storage.kubo_rpc import KuboCommandError, KuboRpc, short_cause

log = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024
RESUBSCRIBE_MIN_DELAY = 0.5
RESUBSCRIBE_MAX_DELAY = 30.0


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


class TopicReceiver:
    """One topic of one daemon, received on a background thread until :meth:`stop`.

    Every message is counted (``counts["received"]``, ``counts["bytes_in"]``), dropped as
    ``oversize`` if larger than ``max_message_bytes``, and otherwise handed to ``on_message`` on
    that thread. The thread survives anything: ``on_message`` raising is logged (with its
    traceback) and dropped as ``error``; a subscription that breaks (daemon restarted) is logged
    and re-subscribed with backoff (0.5 s doubling to 30 s, back to 0.5 s once a message
    arrives). :meth:`publish` sends on the same topic, one message at a time, retrying once
    (``counts["bytes_out"]``).

    ``counts`` and ``dropped`` (reason → messages, see :meth:`drop`) are guarded by ``lock``:
    pass the owner's lock, so that its own counters and these can be read in one snapshot.
    ``label`` prefixes the log lines (``"gossip on 'topic': …"``), written to ``logger``, so they
    stay under the owner's logger name.
    """

    def __init__(
        self,
        pubsub: PubsubClient,
        topic: str,
        on_message: Callable[[PubsubMessage], None],
        *,
        max_message_bytes: int,
        lock: threading.Lock | None = None,
        label: str = "pubsub",
        logger: logging.Logger | None = None,
        thread_name: str | None = None,
    ) -> None:
        self.topic = topic
        self.lock = lock or threading.Lock()
        self.counts: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self._pubsub = pubsub
        self._on_message = on_message
        self._max_message_bytes = max_message_bytes
        self._label = label
        self._log = logger or log
        self._thread_name = thread_name or f"{label}:{topic}"
        self._subscription_lock = threading.Lock()
        self._publish_lock = threading.Lock()
        self._stopping = threading.Event()
        self._subscription: Subscription | None = None
        self._thread: threading.Thread | None = None

    @property
    def started(self) -> bool:
        """Whether :meth:`start` succeeded (a receiver is started once)."""
        return self._thread is not None

    @property
    def running(self) -> bool:
        """Whether the receive thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Subscribe (live when this returns) and start the receive thread.

        Raises :class:`StorageError` if the daemon refuses the subscription (nothing is started
        then, so it may be called again).
        """
        self._subscription = self._pubsub.subscribe(self.topic)
        self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """Close the subscription and join the thread; returns whether the thread ended in time."""
        self._stopping.set()
        with self._subscription_lock:
            subscription = self._subscription
        if subscription is not None:
            subscription.close()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def drop(self, reason: str, detail: object = "") -> None:
        """Count a message dropped under ``reason`` (and log it at debug level)."""
        with self.lock:
            self.dropped[reason] += 1
        self._log.debug("%s on %r: dropped (%s) %s", self._label, self.topic, reason, detail)

    def publish(self, data: bytes) -> None:
        """Publish one message at a time, retrying once; :class:`StorageError` if both fail.

        Kubo (≥ 0.40) runs libp2p's ``BasicSeqnoValidator`` on every message, local ones
        included: a message whose seqno is not above the highest seen from its peer is ignored,
        and two concurrent publishes from one daemon can commit their seqnos out of order, so
        the loser fails with "validation ignored". Serializing our own publishes avoids that
        race between our threads; the retry (with a fresh seqno) covers another client of the
        same daemon. (docs/design.md, "Gossip", has the receiving side of the same validator.)
        """
        with self._publish_lock:
            try:
                self._pubsub.publish(self.topic, data)
            except StorageError as exc:
                self._log.info("%s on %r: publish failed (%s); retrying once",
                               self._label, self.topic, exc)  # fmt: skip
                self._pubsub.publish(self.topic, data)
        with self.lock:
            self.counts["bytes_out"] += len(data)

    def _run(self) -> None:
        """Read the subscription until stopped; re-subscribe (with backoff) if it breaks."""
        delay = RESUBSCRIBE_MIN_DELAY
        while not self._stopping.is_set():
            with self._subscription_lock:
                subscription = self._subscription
            if subscription is not None:
                try:
                    for message in subscription:
                        self._deliver(message)
                        delay = RESUBSCRIBE_MIN_DELAY
                except StorageError as exc:
                    self._log.warning("%s on %r: %s", self._label, self.topic, exc)
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, RESUBSCRIBE_MAX_DELAY)
            try:
                fresh = self._pubsub.subscribe(self.topic)
            except StorageError as exc:
                self._log.warning("%s on %r: re-subscribe failed: %s", self._label, self.topic, exc)
                continue
            with self._subscription_lock:
                self._subscription = fresh
            if self._stopping.is_set():  # stop() ran while we subscribed: it missed this one
                fresh.close()

    def _deliver(self, message: PubsubMessage) -> None:
        """Count, size-check and hand on one message; never raises (the thread must survive)."""
        try:
            size = len(message.data)
            with self.lock:
                self.counts["received"] += 1
                self.counts["bytes_in"] += size
            if size > self._max_message_bytes:
                return self.drop("oversize", f"{size} bytes")
            self._on_message(message)
        except Exception:
            self._log.exception("%s on %r: unexpected error handling a message",
                                self._label, self.topic)  # fmt: skip
            self.drop("error")
        return None
