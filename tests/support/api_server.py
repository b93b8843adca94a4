"""The real API app under uvicorn on a free loopback port, in a thread, for tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn

from tests.support.net import free_port


@contextmanager
def serve_api(app: Any, name: str = "api-server", timeout: float = 20.0) -> Iterator[str]:
    """Serve `app` until the block ends; yields its base URL once `/healthz` says the database
    answers (the pool opens in the background)."""
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                        lifespan="on", ws="none", access_log=False))
    thread = threading.Thread(target=srv.run, name=name, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    try:
        while not srv.started:
            if time.monotonic() > deadline or not thread.is_alive():
                pytest.fail("the API server did not start")
            time.sleep(0.02)
        while httpx.get(f"{base}/healthz").status_code != 200:
            if time.monotonic() > deadline:
                pytest.fail("the API never reached the database")
            time.sleep(0.05)
        yield base
    finally:
        srv.should_exit = True
        thread.join(10)
