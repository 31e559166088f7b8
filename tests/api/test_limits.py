"""What one client can hold of a real `pixeldrop serve`: header size and count, half-sent heads
and bodies, idle connections, and a client hanging up mid-body. Raw sockets on loopback, with
the limits set short through the environment; every loop is bounded in count and time."""

from __future__ import annotations

import contextlib
import json
import socket
import time

import pytest
import requests

from ..server import Server

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
MAX_CONNECTIONS = 8
MAX_HEADER_COUNT = 50
SLACK = 4.0  # seconds of scheduling noise allowed on top of a timeout


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model):
    server = Server(tmp_path_factory.mktemp("limits") / "home", "--model", tiny_model,
                    PIXELDROP_HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
                    PIXELDROP_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT),
                    PIXELDROP_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
                    PIXELDROP_MAX_HEADER_COUNT=str(MAX_HEADER_COUNT))
    try:
        server.start()
        yield server
    finally:
        server.stop()


def connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def read_until_closed(sock: socket.socket, timeout: float = 10) -> bytes:
    """All the server sends until it closes; socket.timeout if it has not closed within `timeout`."""
    deadline = time.monotonic() + timeout
    chunks = []
    while True:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:  # closed with our bytes unread
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def post_head(key: str, content_length: int) -> bytes:
    return (f"POST /text-to-image/v1 HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: {key}\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {content_length}\r\n\r\n").encode()


def test_a_header_section_over_the_limit_is_refused_at_once(server):
    filler = b"X-Filler: " + b"a" * 1000 + b"\r\n"
    with connect(server) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # it may hang up while we send
            for _ in range(1024):  # 1 MiB of headers that never end; the limit is 16 KiB
                sock.sendall(filler)
        answer = read_until_closed(sock)
    assert answer == b"" or answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 431")), answer[:200]
    assert time.monotonic() - started < SLACK


def test_too_many_headers_are_431(server):
    headers = {f"X-Header-{i}": str(i) for i in range(MAX_HEADER_COUNT + 1)}
    response = requests.get(server.url + "/healthz", headers=headers, timeout=10)
    assert response.status_code == 431
    assert response.json() == {"error": f"The request has more than {MAX_HEADER_COUNT} headers."}
    assert requests.get(server.url + "/healthz", timeout=10).status_code == 200


def test_a_half_sent_head_is_closed_after_the_header_timeout(server):
    with connect(server) as sock:
        sock.sendall(b"POST /text-to-image/v1 HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        started = time.monotonic()
        assert read_until_closed(sock) == b""
    assert HEADER_TIMEOUT * 0.5 < time.monotonic() - started < HEADER_TIMEOUT + SLACK


def test_trickling_a_head_does_not_restart_the_clock(server):
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        started = time.monotonic()
        sock.settimeout(0.1)  # one byte each 0.1 s: well within the timeout between any two
        for _ in range(200):
            try:
                sock.sendall(b"a")
                if sock.recv(1) == b"":
                    break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        else:
            pytest.fail("the connection was still open after 20 s of trickling")
    assert time.monotonic() - started < HEADER_TIMEOUT + SLACK


def test_a_body_shorter_than_its_content_length_is_408_after_the_body_timeout(server):
    with connect(server) as sock:
        sock.sendall(post_head(server.demo_key(), 100) + b"prompt=a+cat")
        started = time.monotonic()
        answer = read_until_closed(sock)
    elapsed = time.monotonic() - started
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer
    assert b"connection: close" in head.lower()
    assert json.loads(body) == {"error": f"The request body did not arrive within {BODY_TIMEOUT:g} s."}
    assert BODY_TIMEOUT * 0.5 < elapsed < BODY_TIMEOUT + SLACK


def test_connections_past_the_limit_get_503_until_the_idle_ones_are_dropped(server):
    idle = [connect(server) for _ in range(MAX_CONNECTIONS + 2)]
    try:
        # The idle connections were accepted before the probe (one backlog, in order): it is refused.
        probe = requests.get(server.url + "/healthz", timeout=10)
        assert probe.status_code == 503, probe.text
        assert probe.headers["content-type"] == "application/json" and "connections" in probe.json()["error"]
        assert int(probe.headers["retry-after"]) >= 1
        for sock in idle:  # the header timeout drops every one of them
            assert read_until_closed(sock, HEADER_TIMEOUT + SLACK) == b""
    finally:
        for sock in idle:
            sock.close()
    assert requests.get(server.url + "/healthz", timeout=10).status_code == 200


def test_a_client_hanging_up_mid_body_is_logged_once_in_one_line(server):
    with connect(server) as sock:
        sock.sendall(post_head(server.demo_key(), 100) + b"prompt=a")
    server.wait_for("the client disconnected before sending its whole body", timeout=30)
    assert requests.get(server.url + "/healthz", timeout=10).status_code == 200
    server.wait_for('"GET /healthz HTTP/1.1" 200', timeout=30)
    assert sum("disconnected before sending its whole body" in line for line in server.lines) == 1
    assert not [line for line in server.lines if "Traceback" in line or "unexpected error" in line
                or "Exception in ASGI application" in line]
