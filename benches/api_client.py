"""What the control-API benchmarks share (benches/swap_latency.py,
benches/stream_churn.py): a free loopback port, one JSON request, and waiting for
a run to be ready. Standard library only."""

import json
import socket
import sys
import time
import urllib.error
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(method, url, body=None):
    """One request; (status, decoded JSON body)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def wait_ready(base, limit_s=120):
    """Waits for GET /readyz to answer 200; exits the script if it never does."""
    deadline = time.time() + limit_s
    while True:
        try:
            if call("GET", base + "/readyz")[0] == 200:
                return
        except OSError:
            pass
        if time.time() > deadline:
            sys.exit("the run never became ready")
        time.sleep(0.2)
