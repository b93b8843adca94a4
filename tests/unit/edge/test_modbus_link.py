"""edge/modbus_io.Link: a link it cannot open as configured is refused up front."""

from __future__ import annotations

import pytest

from edge.modbus_io import Link, LinkConfigError


def test_tls_link_without_a_context_is_refused_not_plain_tcp() -> None:
    # pymodbus takes sslctx=None without complaint and connects in plain TCP
    with pytest.raises(LinkConfigError, match=r"needs an ssl\.SSLContext") as caught:
        Link("tls", "127.0.0.1:802", timeout=1.0, retries=0)
    assert caught.value.link == "tls://127.0.0.1:802"
