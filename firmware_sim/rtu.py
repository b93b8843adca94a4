"""RS-485 lines for the RTU meters: a pty pair made by socat, one end for us, one for the poller.

`socat -d -d pty,raw,echo=0 pty,raw,echo=0` creates two linked pseudo-terminals and prints
their paths on stderr ("N PTY is /dev/pts/7"). The simulator opens the first; the edge (or a
test) opens the second as if it were a USB RS-485 adapter. Raw mode and no echo matter: a
cooked pty would translate CR/LF bytes inside binary Modbus frames and echo our own requests.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass

_PTY_LINE = re.compile(rb"PTY is (\S+)")


class PtyPairError(RuntimeError):
    """socat is missing or did not report two ptys; the message says which."""


@dataclass
class PtyPair:
    """A running socat linking `server_port` and `client_port`. Close it with `close()`."""

    process: subprocess.Popen[bytes]
    server_port: str
    client_port: str

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()

    def __enter__(self) -> PtyPair:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_pty_pair(timeout_s: float = 5.0) -> PtyPair:
    """Start socat and wait until it has printed both pty paths."""
    socat = shutil.which("socat")
    if socat is None:
        raise PtyPairError("socat not found on PATH; install it (apt-get install socat)")
    proc = subprocess.Popen(
        [socat, "-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    paths: list[str] = []
    deadline = time.monotonic() + timeout_s
    while len(paths) < 2:
        line = proc.stderr.readline()  # socat prints both lines right away, before linking
        if not line:
            proc.kill()
            proc.wait()
            raise PtyPairError(f"socat exited (code {proc.returncode}) before printing two ptys")
        match = _PTY_LINE.search(line)
        if match:
            paths.append(match.group(1).decode())
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise PtyPairError(f"socat printed {len(paths)} pty paths within {timeout_s} s")
    return PtyPair(proc, paths[0], paths[1])
