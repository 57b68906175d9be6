"""Load and faults on 127.0.0.1, bounded: 8 clients x 12 requests of valid and malformed bodies, plus
clients that vanish mid-request. Every valid request gets the right scores, every malformed one a 4xx
with one line, nothing gets a 5xx, and the server is healthy and correct afterwards."""

import json
import socket
import threading
import time
from urllib.parse import urlsplit

import numpy as np
import pytest
from serving import CANDIDATES, call, prepare_next_item, served

from promptrec.jobs.serve import ServeConfig
from promptrec.lm.config import ModelConfig
from promptrec.protocols.splits import load_split

NUM_CLIENTS, REQUESTS_PER_CLIENT = 8, 12
MALFORMED = [
    (b'{"user_id": "7", "candidates": ', 422),
    ({"user_id": "7", "candidates": "1,9"}, 422),
    ({"user_id": "7", "candidates": ["1", "nope"]}, 422),
    ({"user_id": "ghost", "candidates": ["1"]}, 422),
    ({"user_id": "7", "candidates": ["1"], "extra": True}, 422),
    (b'{"candidates": ["' + b"9" * 4_000_100 + b'"]}', 413),
]


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    data = prepare_next_item(tmp_path_factory.mktemp("load") / "data")
    config = ServeConfig(model=ModelConfig(model=str(tiny_model_dir), device="cpu"))
    with served(config, data_dir=data) as (service, url):
        yield service, url, list(load_split(data, "train"))


def rank_body(user: str) -> dict:
    return {"user_id": user, "candidates": CANDIDATES[user]}


def vanish(url: str, payload: bytes) -> None:
    """Send `payload` on a raw connection and close it without reading an answer."""
    where = urlsplit(url)
    with socket.create_connection((where.hostname, where.port), timeout=10) as sock:
        sock.sendall(payload)


def vanishing_clients(url: str) -> list[bytes]:
    full = json.dumps(rank_body("7")).encode()
    head = b"POST /v1/rank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    return [
        head % 5000 + full[:20],  # declares 5000 bytes, sends 20, hangs up
        head % len(full) + full,  # a whole valid request, gone before the answer
        b"GET /healthz HTTP/1.1\r\nHo",  # torn headers
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS hello on a plain-HTTP port
        b"",  # connects, says nothing
    ]


def test_concurrent_valid_and_malformed_requests_and_vanishing_clients(server):
    service, url, examples = server
    expected_rank = {user: call(url, "POST", "/v1/rank", rank_body(user))[1] for user in CANDIDATES}
    expected_score = call(url, "POST", "/v1/score", {"examples": examples[:2]})[1]["scores"]
    turns_before = service.batcher.num_turns
    failures, statuses, lock = [], [], threading.Lock()
    deadline = time.monotonic() + 300

    def client(number: int) -> None:
        for step in range(REQUESTS_PER_CLIENT):
            if time.monotonic() > deadline:
                return
            kind = (number + step) % 4
            try:
                if kind == 0:  # valid rank
                    user = list(CANDIDATES)[(number + step) % len(CANDIDATES)]
                    status, body = call(url, "POST", "/v1/rank", rank_body(user), timeout=120)
                    ok = status == 200 and body["items"] == expected_rank[user]["items"]
                    ok = ok and np.allclose(body["scores"], expected_rank[user]["scores"], rtol=0, atol=1e-6)
                elif kind == 1:  # valid score
                    status, body = call(url, "POST", "/v1/score", {"examples": examples[:2]}, timeout=120)
                    ok = status == 200 and np.allclose(body["scores"], expected_score, rtol=0, atol=1e-5)
                else:  # malformed
                    payload, want = MALFORMED[(number * REQUESTS_PER_CLIENT + step) % len(MALFORMED)]
                    raw = payload if isinstance(payload, bytes) else None
                    status, body = call(url, "POST", "/v1/rank", None if raw else payload, raw=raw, timeout=120)
                    ok = status == want and list(body) == ["error"] and "\n" not in body["error"]
                if kind == 3 and number % 2:  # some clients also hang up on the server mid-request
                    vanish(url, vanishing_clients(url)[(number + step) % 5])
            except Exception as error:  # a client-side failure is a test failure, reported below
                status, ok, body = None, False, repr(error)
            with lock:
                statuses.append(status)
                if not ok:
                    failures.append((number, step, kind, status, str(body)[:200]))

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(NUM_CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 1))
    assert not any(thread.is_alive() for thread in threads), "a client hung"
    assert failures == []
    assert len(statuses) == NUM_CLIENTS * REQUESTS_PER_CLIENT and not any(s >= 500 for s in statuses)
    status, health = call(url, "GET", "/healthz")
    assert status == 200 and health["status"] == "ok" and health["queued"] == 0
    assert service.batcher.num_turns > turns_before
    assert call(url, "POST", "/v1/rank", rank_body("12"))[1] == expected_rank["12"]
