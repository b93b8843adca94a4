"""The agent's health as Prometheus metrics on a local port (`health_port` in the config).

Most values already live in the agent's stats objects (poller, publisher, outbox), so they are
read at scrape time by one collector instead of being mirrored into metric objects on every
poll: nothing to keep in sync, and nothing on the hot path. Only the request latency is a real
histogram, observed by the poller. Each agent has its own registry, so several agents (tests,
benchmarks) can live in one process.

`wattrail edge status` reads the same endpoint; names are listed in docs/edge-agent.md.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from edge.delivery import BreakerState, ConnState

if TYPE_CHECKING:
    from edge.agent import Agent

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


class _AgentCollector(Collector):
    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Metric]:
        a = self.agent
        ps, pub = a.poller.stats, a.publisher.stats
        polls = CounterMetricFamily("wattrail_edge_polls", "poll results per meter",
                                    labels=["meter", "result"])
        for meter, results in list(ps.by_meter.items()):
            for result in ("ok", "comms_lost", "decode_error", "skipped"):
                polls.add_metric([meter, result], results.get(result, 0))
        yield polls
        circuit = GaugeMetricFamily("wattrail_edge_meter_circuit_open",
                                    "1 while a meter's circuit breaker skips it",
                                    labels=["meter"])
        for meter, b in list(a.poller.breakers.items()):
            circuit.add_metric([meter], 0.0 if b.state is BreakerState.CLOSED else 1.0)
        yield circuit
        busy = GaugeMetricFamily("wattrail_edge_link_cycle_seconds",
                                 "time the last cycle kept each link busy", labels=["link"])
        for link, v in list(ps.link_last_s.items()):
            busy.add_metric([link], v)
        yield busy
        overruns = CounterMetricFamily("wattrail_edge_link_overruns",
                                       "cycles in which a link needed more than the interval",
                                       labels=["link"])
        for link, n in list(ps.link_overruns.items()):
            overruns.add_metric([link], n)
        yield overruns
        planned = GaugeMetricFamily("wattrail_edge_link_planned_seconds",
                                    "estimated RTU wire time of a link's plan per cycle",
                                    labels=["link"])
        over = GaugeMetricFamily("wattrail_edge_link_over_budget",
                                 "1 when a link's planned requests cannot fit in the interval",
                                 labels=["link"])
        for link, v in list(ps.link_planned_s.items()):
            planned.add_metric([link], v)
            over.add_metric([link], 1.0 if link in ps.over_budget else 0.0)
        yield planned
        yield over
        yield _gauge("wattrail_edge_last_cycle_seconds", "duration of the last poll cycle",
                     ps.last_cycle_s)

        s = a.outbox.summary()
        yield _gauge("wattrail_edge_outbox_depth", "unconfirmed envelopes in the outbox", s.depth)
        yield _gauge("wattrail_edge_outbox_bytes", "bytes of unconfirmed envelopes", s.size_bytes)
        age = 0.0 if s.oldest_created_ms is None else max(0.0, time.time() - s.oldest_created_ms / 1000)
        yield _gauge("wattrail_edge_outbox_oldest_age_seconds",
                     "age of the oldest unconfirmed envelope (0 when empty)", age)
        yield _gauge("wattrail_edge_head_seq", "seq of the last sealed envelope", s.head_seq)
        yield _gauge("wattrail_edge_last_ack_seq", "the cloud's last 'committed up to' seq",
                     s.confirmed_seq)
        yield _gauge("wattrail_edge_last_puback_seq", "highest seq the broker acknowledged",
                     pub.last_puback_seq)
        yield _gauge("wattrail_edge_publish_lag_seconds",
                     "sealed -> broker PUBACK of the last acknowledged envelope",
                     pub.publish_lag_s)
        yield _gauge("wattrail_edge_broker_connected", "1 while connected to the broker",
                     1.0 if a.publisher.state is ConnState.CONNECTED else 0.0)
        conn = GaugeMetricFamily("wattrail_edge_broker_state", "connection state (1 = current)",
                                 labels=["state"])
        for st in ConnState:
            conn.add_metric([st.value], 1.0 if a.publisher.state is st else 0.0)
        yield conn
        for name, doc, v in (
            ("wattrail_edge_connect_attempts", "broker connection attempts", pub.connect_attempts),
            ("wattrail_edge_connect_failures", "failed broker connection attempts",
             pub.connect_failures),
            ("wattrail_edge_published", "envelopes handed to the broker (incl. resends)",
             pub.published),
            ("wattrail_edge_resends", "times unconfirmed envelopes were sent again", pub.resends),
            ("wattrail_edge_sealed", "envelopes signed and stored", a.stats.sealed),
            ("wattrail_edge_refused_outbox_full", "cycles refused by a full outbox",
             a.stats.refused_full),
            ("wattrail_edge_events", "alarm/tamper events raised", a.stats.events),
            ("wattrail_edge_events_dropped", "events dropped from the offline queue",
             pub.events_dropped),
            ("wattrail_edge_clock_jumps", "wall-clock steps seen between cycles", a.clock.jumps),
        ):
            yield _counter(name, doc, v)


class Health:
    def __init__(self, agent: Agent) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.latency = Histogram("wattrail_edge_request_seconds",
                                 "time to read one meter's planned registers", ["link"],
                                 registry=self.registry, buckets=LATENCY_BUCKETS)
        self.registry.register(_AgentCollector(agent))
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    def observe(self, link: str, seconds: float) -> None:
        self.latency.labels(link).observe(seconds)

    def start(self, host: str, port: int) -> int:
        """Serve /metrics; returns the bound port (port 0 picks a free one)."""
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        self.port = int(self._server.server_port)
        return self.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
