"""Typed errors of the register codecs, split by who is at fault (DESIGN.md rules 1 and 3).

    ProtocolError                 base: everything the codecs raise on purpose
    ├── RemoteProtocolError       the meter sent junk: count it, quarantine it, keep polling
    │   ├── IncompleteResponse    fewer words (or bytes) than asked for: retry the read
    │   └── MalformedResponse     words that cannot be what we asked for: check the map
    └── LocalProtocolError        we did something wrong: a bug or a bad map, fix the caller
        ├── EncodeError           a value the map cannot represent
        └── PlanError             responses that do not match the plan they answer

Every error carries data (`meter_id`, `register`) so a supervisor loop can count and route it
without parsing messages; messages say what to do next. A *value* that decodes but is not
physical is not an exception: the decoder marks the reading `DECODE_ERROR` field by field.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base class. `register` is the 0-based Modbus address the problem starts at, if known."""

    def __init__(self, message: str, *, meter_id: str | None = None, register: int | None = None):
        self.meter_id = meter_id
        self.register = register
        where = []
        if meter_id is not None:
            where.append(f"meter {meter_id}")
        if register is not None:
            where.append(f"register {register} (0x{register:04X})")
        super().__init__(f"{message} [{', '.join(where)}]" if where else message)


class RemoteProtocolError(ProtocolError):
    """The meter's answer is unusable; the poll loop counts it and carries on."""


# The names are the project's vocabulary (DESIGN.md, the brief), hence no "Error" suffix.
class IncompleteResponse(RemoteProtocolError):  # noqa: N818
    """The response stopped early. `expected`/`got` count words (or bytes for raw payloads)."""

    def __init__(
        self,
        message: str,
        *,
        expected: int,
        got: int,
        meter_id: str | None = None,
        register: int | None = None,
    ):
        self.expected = expected
        self.got = got
        super().__init__(
            f"{message}: expected {expected}, got {got}; retry the read",
            meter_id=meter_id,
            register=register,
        )


class MalformedResponse(RemoteProtocolError):  # noqa: N818
    """The response has the wrong shape or identity; retrying will not help."""

    def __init__(
        self, message: str, *, reason: str, meter_id: str | None = None, register: int | None = None
    ):
        self.reason = reason  # a short machine-readable tag, e.g. "signature", "word_range"
        super().__init__(message, meter_id=meter_id, register=register)


class LocalProtocolError(ProtocolError):
    """Our side is wrong (a caller bug or a bad map); do not blame the meter."""


class EncodeError(LocalProtocolError):
    """A value cannot be written with this map (out of the type's range, or no 'absent' code)."""


class PlanError(LocalProtocolError):
    """Responses do not line up with the read plan, or a map cannot be planned."""
