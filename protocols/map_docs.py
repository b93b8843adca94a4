"""Render a register map as a Markdown table for docs/register-maps.md.

The doc embeds this output verbatim and a unit test compares them, so the published tables
cannot drift from the maps the code decodes with. Regenerate with:

    .venv/bin/python -c "from protocols.map_docs import render_all; print(render_all())"
"""

from __future__ import annotations

from protocols.maps import MAP_NAMES, get_map
from protocols.meter_map import FieldSpec, MeterMap

_HEADER = (
    "| field | address | type | word order | scale | meter unit -> SI | valid (SI) | note |\n"
    "|---|---|---|---|---|---|---|---|"
)


def _scale(m: MeterMap, f: FieldSpec) -> str:
    if f.scale_factor is not None:
        return f"x10^sf (sf @ {f.scale_factor}, preferred {m.scale_factors[f.scale_factor]})"
    return "1" if f.scale_exp == 0 else f"x10^{f.scale_exp}"


def _row(m: MeterMap, f: FieldSpec) -> str:
    order = f.order.value if f.words == 2 else "-"
    si = f.unit or "ratio"
    if f.si_exp:
        si += f" x10^{f.si_exp}"
    lo, hi = f.valid
    return (
        f"| `{f.field}` | {f.address} (0x{f.address:04X}) | {f.dtype.value} | {order} "
        f"| {_scale(m, f)} | {si} | {lo:g} .. {hi:g} | {f.note} |"
    )


def render_map_table(m: MeterMap) -> str:
    rows = [_row(m, f) for f in sorted(m.fields, key=lambda f: f.address)]
    return "\n".join([_HEADER, *rows])


def render_all() -> str:
    parts = []
    for name in MAP_NAMES:
        m = get_map(name)
        fc = ", ".join(f"{c:02d}" for c in m.functions)
        parts.append(
            f"<!-- map:{name} -->\n### `{name}`: {m.title}\n\n"
            f"Read with function {m.function:02d} (served on {fc}); planner max gap {m.max_gap}."
            f"\n\n{render_map_table(m)}\n<!-- /map:{name} -->"
        )
    return "\n\n".join(parts)
