"""The simulated low-voltage grid: regions -> feeders -> transformers -> customers.

A grid is either generated deterministically from a seed and a few sizes, or loaded from the
JSON grid file (grid_file.py; format in docs/grid-file.md; the cloud's topology import reads the
same file). Everything here is plain data: physics lives in physics.py.

Addressing rules (one RS-485-to-TCP gateway per transformer, one per region's substation):
- unit id 1 on a transformer gateway is the balance meter on the transformer secondary,
  customers get unit ids 2..247 (Modbus unit ids stop at 247);
- feeder-head meters sit behind their region's substation gateway, unit ids 1..247.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

METER_MODELS = ("sdm630", "sdm120", "em24", "sunspec203")
CUSTOMER_KINDS = ("residential", "commercial", "industrial")
MAX_CUSTOMERS_PER_GATEWAY = 246  # unit ids 2..247; 1 is the balance meter

# Standard distribution-transformer losses (EN 50588-1 class, rounded): kVA -> (no-load W,
# load loss at rated current W). Ratings are picked so the expected peak sits at ~60-80%.
TRANSFORMER_LOSSES: dict[int, tuple[float, float]] = {
    50: (90.0, 750.0),
    100: (145.0, 1250.0),
    160: (210.0, 1750.0),
    250: (300.0, 2350.0),
    315: (360.0, 2800.0),
    400: (430.0, 3250.0),
    630: (600.0, 4600.0),
    1000: (770.0, 7600.0),
}
_TARIFF = {"residential": 0.25, "commercial": 0.22, "industrial": 0.15}
_BASE_KW = {"residential": (0.35, 0.9), "commercial": (3.0, 12.0), "industrial": (20.0, 60.0)}
_PEAK_FACTOR = {"residential": 3.0, "commercial": 2.0, "industrial": 1.6}


@dataclass(frozen=True, slots=True)
class Region:
    region_id: str
    name: str
    substation_gateway_id: str
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Feeder:
    feeder_id: str
    region_id: str
    head_meter_id: str
    head_meter_model: str
    head_unit_id: int
    length_km: float
    rural: bool


@dataclass(frozen=True, slots=True)
class Transformer:
    transformer_id: str
    feeder_id: str
    gateway_id: str
    balance_meter_id: str
    balance_meter_model: str
    rating_kva: float
    no_load_loss_w: float
    load_loss_w: float  # at rated current; scales with (S / S_rated)^2
    distance_km: float  # along the feeder from its head: drives the feeder voltage drop
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Customer:
    meter_id: str
    customer_id: str
    kind: str  # one of CUSTOMER_KINDS
    special: bool  # large or special load (hospital, pumping station...)
    transformer_id: str
    gateway_id: str
    unit_id: int
    meter_model: str  # one of METER_MODELS
    phases: int  # 1 or 3
    phase: int | None  # 0/1/2 = L1/L2/L3 for single-phase customers, None for 3-phase
    base_kw: float  # mean active load; profiles.py shapes it in time
    pv_kwp: float  # rooftop PV peak; 0 = no PV
    service_m: float  # cable length from the transformer: drives voltage drop and I^2R loss
    tariff_per_kwh: float
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Grid:
    seed: int
    currency: str
    regions: tuple[Region, ...]
    feeders: tuple[Feeder, ...]
    transformers: tuple[Transformer, ...]
    customers: tuple[Customer, ...]

    def gateways(self) -> dict[str, list[tuple[int, str]]]:
        """gateway id -> [(unit id, meter id)], in a stable order (transformers, then regions)."""
        out: dict[str, list[tuple[int, str]]] = {}
        for t in self.transformers:
            out[t.gateway_id] = [(1, t.balance_meter_id)]
        for c in self.customers:
            out[c.gateway_id].append((c.unit_id, c.meter_id))
        for r in self.regions:
            out[r.substation_gateway_id] = [
                (f.head_unit_id, f.head_meter_id) for f in self.feeders if f.region_id == r.region_id
            ]
        return out

    def meter_models(self) -> dict[str, str]:
        """meter id -> meter model, for every meter (customers, balance and feeder heads)."""
        out = {c.meter_id: c.meter_model for c in self.customers}
        out.update({t.balance_meter_id: t.balance_meter_model for t in self.transformers})
        out.update({f.head_meter_id: f.head_meter_model for f in self.feeders})
        return out


def generate_grid(
    seed: int, meters: int, feeders: int = 4, transformers: int = 20, regions: int | None = None
) -> Grid:
    """Build a grid with `meters` customer meters. Same arguments, same grid, byte for byte."""
    if meters < 1 or feeders < 1 or transformers < feeders:
        raise ValueError("need meters >= 1, feeders >= 1 and transformers >= feeders")
    if meters > transformers * MAX_CUSTOMERS_PER_GATEWAY:
        need = math.ceil(meters / MAX_CUSTOMERS_PER_GATEWAY)
        raise ValueError(f"{meters} meters need at least {need} transformers (247 unit ids each)")
    rng = np.random.default_rng(seed)
    n_regions = regions if regions is not None else max(1, math.ceil(feeders / 4))
    region_list = []
    for r in range(n_regions):
        lat, lon = 52.0 + 0.3 * r, 5.0 + 0.4 * r
        region_list.append(Region(f"R{r + 1}", f"Region {r + 1}", f"GW-R{r + 1}-SUB", lat, lon))
    feeder_list: list[Feeder] = []
    for f in range(feeders):
        reg = region_list[f % n_regions]
        rural = f % 3 == 2  # every third feeder is a long rural line with a low far end
        length = float(rng.uniform(10.0, 25.0) if rural else rng.uniform(2.0, 5.0))
        fid = f"{reg.region_id}-F{f // n_regions + 1:02d}"
        unit = sum(1 for x in feeder_list if x.region_id == reg.region_id) + 1
        feeder_list.append(Feeder(fid, reg.region_id, f"FDR-{fid}", "em24", unit, round(length, 3), rural))

    tx_feeder = [feeder_list[i % feeders] for i in range(transformers)]
    owner = rng.integers(0, transformers, size=meters)
    owner[:transformers] = np.arange(min(transformers, meters))  # every transformer serves someone
    counts = np.bincount(owner, minlength=transformers)
    while counts.max() > MAX_CUSTOMERS_PER_GATEWAY:  # rebalance the rare overfull transformer
        src, dst = int(counts.argmax()), int(counts.argmin())
        owner[np.flatnonzero(owner == src)[0]] = dst
        counts = np.bincount(owner, minlength=transformers)

    kinds = rng.choice(3, size=meters, p=[0.85, 0.12, 0.03])
    special = rng.random(meters) < 0.01
    base_kw = np.array([rng.uniform(*_BASE_KW[CUSTOMER_KINDS[k]]) for k in kinds])
    base_kw = np.where(special, base_kw * 5.0, base_kw)
    peak_kw = base_kw * np.array([_PEAK_FACTOR[CUSTOMER_KINDS[k]] for k in kinds])
    tx_peak = np.bincount(owner, weights=peak_kw, minlength=transformers)

    tx_list: list[Transformer] = []
    for t in range(transformers):
        fd = tx_feeder[t]
        reg = region_list[[r.region_id for r in region_list].index(fd.region_id)]
        # Diversity: not every customer peaks at once, so the coincident peak is ~0.5x the sum.
        want = tx_peak[t] * 0.5 / 0.7 / 0.95
        rating = next((k for k in TRANSFORMER_LOSSES if k >= want), 1000)
        nll, ll = TRANSFORMER_LOSSES[rating]
        dist = float(rng.uniform(0.1, 1.0) * fd.length_km)
        angle = 2 * math.pi * (feeder_list.index(fd) / feeders)
        lat = reg.lat + dist / 111.0 * math.cos(angle)
        lon = reg.lon + dist / (111.0 * math.cos(math.radians(reg.lat))) * math.sin(angle)
        tid = f"{fd.feeder_id}-T{t // feeders + 1:02d}"
        tx_list.append(
            Transformer(
                tid,
                fd.feeder_id,
                f"GW-{tid}",
                f"BAL-{tid}",
                "sdm630",
                float(rating),
                nll,
                ll,
                round(dist, 3),
                round(lat, 6),
                round(lon, 6),
            )
        )

    customers: list[Customer] = []
    next_unit = [2] * transformers
    for i in range(meters):
        t = int(owner[i])
        tx, fd = tx_list[t], tx_feeder[t]
        kind = CUSTOMER_KINDS[kinds[i]]
        three = kind != "residential" or bool(special[i]) or rng.random() < 0.1
        pv_p = {"residential": 0.2, "commercial": 0.1, "industrial": 0.05}[kind]
        pv = (
            float(rng.uniform(3.0, 8.0) * (1 if kind == "residential" else 4)) if rng.random() < pv_p else 0.0
        )
        if not three:
            model = "sdm120"
        elif pv > 0:
            model = "sunspec203" if rng.random() < 0.5 else "sdm630"
        else:
            model = "sdm630" if rng.random() < 0.6 else "em24"
        radius_m = (500.0 if fd.rural else 200.0) * math.sqrt(float(rng.random()))
        ang = float(rng.uniform(0, 2 * math.pi))
        lat = tx.lat + radius_m / 111_000.0 * math.cos(ang)
        lon = tx.lon + radius_m / (111_000.0 * math.cos(math.radians(tx.lat))) * math.sin(ang)
        customers.append(
            Customer(
                meter_id=f"MTR-{i + 1:06d}",
                customer_id=f"CUST-{i + 1:06d}",
                kind=kind,
                special=bool(special[i]),
                transformer_id=tx.transformer_id,
                gateway_id=tx.gateway_id,
                unit_id=next_unit[t],
                meter_model=model,
                phases=3 if three else 1,
                phase=None if three else int(rng.integers(0, 3)),
                base_kw=round(float(base_kw[i]), 4),
                pv_kwp=round(pv, 3),
                service_m=round(10.0 + 1.3 * radius_m, 1),
                tariff_per_kwh=_TARIFF[kind],
                lat=round(lat, 6),
                lon=round(lon, 6),
            )
        )
        next_unit[t] += 1
    return Grid(seed, "EUR", tuple(region_list), tuple(feeder_list), tuple(tx_list), tuple(customers))
