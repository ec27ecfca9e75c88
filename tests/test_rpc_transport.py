"""The chain RPC transport (marketplace.chain.transport): web3's provider posting over a kept-alive
stdlib connection per thread, with web3's own errors, retries and answers."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest
import requests

from marketplace.chain.backend import connect
from marketplace.chain.devnet import DevnetProcess, free_port, start_devnet
from marketplace.chain.transport import KeepAliveSessionManager


def manager_of(w3: object) -> KeepAliveSessionManager:
    manager = w3.provider._request_session_manager  # type: ignore[attr-defined]
    assert isinstance(manager, KeepAliveSessionManager)
    return manager


def test_connect_posts_over_one_kept_alive_connection_per_thread(
    module_chain: DevnetProcess,
) -> None:
    # Prepare
    w3 = connect(module_chain.rpc_url)
    manager = manager_of(w3)
    # Execute: several requests here, and one from another thread
    numbers = [w3.eth.block_number for _ in range(5)]
    first = manager._local.conns[module_chain.rpc_url]
    other: list[object] = []
    worker = threading.Thread(
        target=lambda: (
            w3.eth.block_number,
            other.append(manager._local.conns[module_chain.rpc_url]),
        )
    )
    worker.start(), worker.join()
    w3.eth.block_number  # noqa: B018
    # Assert: the node's answers, one connection reused here, another one for the other thread
    assert numbers == [w3.eth.block_number] * 5
    assert manager._local.conns[module_chain.rpc_url] is first and first.sock is not None
    assert other and other[0] is not first


def test_a_restarted_node_on_the_same_port_is_reached_again_without_error(chain_kind) -> None:
    # Prepare: a node, a kept-alive connection to it, then the node restarted on its port
    port = free_port()
    node = start_devnet(chain_kind, port=port)
    try:
        w3 = connect(node.rpc_url)
        chain_id = w3.eth.chain_id
        w3.eth.block_number  # noqa: B018 (the connection now idles, kept alive)
        node.stop()
        node = start_devnet(chain_kind, port=port)
        # Execute / Assert: the stale connection is replaced; the request goes through once
        assert w3.eth.block_number == 0
        assert w3.eth.chain_id == chain_id
    finally:
        node.stop()


def test_a_dead_endpoint_raises_requests_connection_error_as_web3_did() -> None:
    # Prepare: nothing listens; web3's retries off so it fails at once
    manager = KeepAliveSessionManager(fallback=None)
    url = f"http://127.0.0.1:{free_port()}"
    # Execute / Assert
    with pytest.raises(requests.ConnectionError, match=r"Connection refused|ConnectionRefused"):
        manager.make_post_request(url, b"{}", timeout=2.0)


@pytest.fixture
def failing_server() -> Iterator[str]:
    """An HTTP server answering every POST with 503."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def test_an_http_error_status_raises_requests_http_error(failing_server: str) -> None:
    manager = KeepAliveSessionManager(fallback=None)
    with pytest.raises(requests.HTTPError, match="503"):
        manager.make_post_request(failing_server, b"{}", timeout=2.0)


def test_an_endpoint_behind_a_proxy_is_left_to_web3s_own_session(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare: a proxy configured for every http URL, and a fallback that records its calls
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    calls: list[str] = []

    class Fallback:
        def make_post_request(self, uri: str, data: bytes, **kwargs: object) -> bytes:
            calls.append(uri)
            return b'{"jsonrpc":"2.0","id":1,"result":"0x1"}'

    manager = KeepAliveSessionManager(Fallback())
    # Execute
    body = manager.make_post_request("http://10.0.0.1:8545", b"{}", timeout=1.0)
    # Assert: web3's session (which honours the proxy) made the request
    assert calls == ["http://10.0.0.1:8545"] and body.endswith(b'"0x1"}')


def test_finished_threads_sockets_are_closed_and_close_closes_every_one(
    module_chain: DevnetProcess,
) -> None:
    # Prepare: a connection from a thread that has finished
    w3 = connect(module_chain.rpc_url)
    manager = manager_of(w3)

    def request_from_a_thread() -> None:
        worker = threading.Thread(target=lambda: w3.eth.block_number)
        worker.start(), worker.join()

    request_from_a_thread()
    finished = list(manager._opened.values())[-1][1]
    # Execute: another thread opens its connection (the finished thread's is closed then)
    request_from_a_thread()
    # Assert: the finished thread's socket closed, the others kept until close()
    assert finished.sock is None
    assert finished not in [c for _, c in manager._opened.values()]
    sockets = [c.sock for _, c in manager._opened.values()]
    assert sockets and all(sock is not None and sock.fileno() >= 0 for sock in sockets)
    manager.close()
    assert manager._opened == {} and all(sock.fileno() == -1 for sock in sockets)
    # ... and a connection closed this way reopens, tracked again, on the next request
    assert w3.eth.block_number >= 0 and len(manager._opened) == 1
