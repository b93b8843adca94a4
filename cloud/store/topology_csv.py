"""The MDM-style grid file: one CSV row per customer meter, the hierarchy in columns.

What a meter-data-management export gives: which meter hangs on which transformer, and the
customer's class and tariff. It becomes the same `wattrail-grid` document as the JSON file
(docs/grid-file.md, "MDM CSV"), checked by the same rules with the CSV's line numbers:

    meter_id,transformer_id,kind,tariff_per_kwh,transformer_rating_kva[,optional columns]

Optional: customer_id (default: the meter id), feeder_id and region_id (default: one feeder
and region named `default`), pv_kwp, phases, special, contract_kva, lat, lon, and per
transformer balance_meter_id, transformer_no_load_w, transformer_load_loss_w. A transformer's
columns are given on any of its rows (the first non-empty value counts; a different value on
another row is a problem). No Modbus addressing: only an edge agent needs it.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from cloud.store.errors import Problem

REQUIRED = ("meter_id", "transformer_id", "kind", "tariff_per_kwh", "transformer_rating_kva")
CUSTOMER_COLS = ("customer_id", "pv_kwp", "phases", "special", "contract_kva", "lat", "lon")
TX_COLS = {"transformer_rating_kva": "rating_kva", "transformer_no_load_w": "no_load_loss_w",
           "transformer_load_loss_w": "load_loss_w", "balance_meter_id": "balance_meter_id"}
HIERARCHY = ("feeder_id", "region_id")
KNOWN = (*REQUIRED, *CUSTOMER_COLS, *TX_COLS, *HIERARCHY)
NUMBERS = {"tariff_per_kwh", "pv_kwp", "contract_kva", "lat", "lon", "transformer_rating_kva",
           "transformer_no_load_w", "transformer_load_loss_w"}
DEFAULT = "default"
_TRUE, _FALSE = {"true", "1", "yes", "y", "t"}, {"false", "0", "no", "n", "f", ""}


def _value(col: str, text: str) -> Any:
    """A cell as the JSON document would hold it; text that is not a number stays text, so the
    grid checks name it ("must be a number") with its line."""
    if col in NUMBERS:
        try:
            return float(text)
        except ValueError:
            return text
    if col == "phases":
        return int(text) if text.strip().isdigit() else text
    if col == "special":
        low = text.strip().lower()
        return True if low in _TRUE else False if low in _FALSE else text
    return text


def grid_from_csv(text: str, *, currency: str | None = None
                  ) -> tuple[dict[str, Any], dict[str, list[int]], list[Problem]]:
    """(grid document, section -> line of each record, problems of the CSV's own shape)."""
    problems: list[Problem] = []
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return {}, {}, [Problem(1, "the file is empty; the first line must name the columns", "")]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        problems.append(Problem(1, f"missing column(s) {', '.join(missing)}; the MDM grid CSV needs "
                                   f"{', '.join(REQUIRED)}", "header"))
    unknown = [h for h in header if h not in KNOWN]
    if unknown:
        problems.append(Problem(1, f"unknown column(s) {', '.join(unknown[:20])}; known: "
                                   f"{', '.join(KNOWN)}", "header"))
    if problems:
        return {}, {}, problems
    regions: dict[str, dict[str, Any]] = {}
    feeders: dict[str, dict[str, Any]] = {}
    txs: dict[str, dict[str, Any]] = {}
    customers: list[dict[str, Any]] = []
    lines: dict[str, list[int]] = {"regions": [], "feeders": [], "transformers": [], "customers": []}
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            problems.append(Problem(line, f"{len(row)} fields, the header has {len(header)}", "row"))
            continue
        cells = {h: v.strip() for h, v in zip(header, row, strict=True)}
        region = cells.get("region_id") or DEFAULT
        feeder = cells.get("feeder_id") or DEFAULT
        tx = cells["transformer_id"]
        if region not in regions:
            regions[region] = {"region_id": region, "name": region}
            lines["regions"].append(line)
        if feeder not in feeders:
            feeders[feeder] = {"feeder_id": feeder, "region_id": region}
            lines["feeders"].append(line)
        elif feeders[feeder]["region_id"] != region:
            problems.append(Problem(line, f"feeder {feeder!r} is in region "
                                          f"{feeders[feeder]['region_id']!r} on an earlier row", "row", tx))
        rec = txs.get(tx)
        if rec is None:
            rec = txs[tx] = {"transformer_id": tx, "feeder_id": feeder}
            lines["transformers"].append(line)
        elif rec["feeder_id"] != feeder:
            problems.append(Problem(line, f"transformer {tx!r} is on feeder {rec['feeder_id']!r} on "
                                          "an earlier row", "row", tx))
        for col, key in TX_COLS.items():
            if cells.get(col):
                v = _value(col, cells[col])
                if key not in rec:
                    rec[key] = v
                elif rec[key] != v:
                    problems.append(Problem(line, f"{col} of transformer {tx!r} is {rec[key]!r} on an "
                                                  f"earlier row, {v!r} here", "row", tx))
        cust: dict[str, Any] = {"meter_id": cells["meter_id"], "transformer_id": tx}
        for col in ("kind", "tariff_per_kwh", *CUSTOMER_COLS):
            if cells.get(col):
                cust[col] = _value(col, cells[col])
        customers.append(cust)
        lines["customers"].append(line)
    for tx, rec in txs.items():
        if "rating_kva" not in rec:
            problems.append(Problem(lines["transformers"][list(txs).index(tx)],
                                    f"transformer {tx!r} has no transformer_rating_kva on any row",
                                    "row", tx))
    doc = {"format": "wattrail-grid", "version": 1, "currency": currency,
           "regions": list(regions.values()), "feeders": list(feeders.values()),
           "transformers": list(txs.values()), "customers": customers}
    return doc, lines, problems
