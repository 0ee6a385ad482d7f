"""Prometheus metrics in the text exposition format (version 0.0.4), without a client library.

Request counters and latency histograms are kept in memory per route template (never per raw
path, so /v1/traces/1 and /v1/traces/2 share one series). Gauges about the service itself (traces
by status, unfinished jobs, embedded workers' hop rate, RPC calls per method) are read when
Prometheus scrapes, from Postgres and from the objects that already count them.
"""

from __future__ import annotations

import bisect
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Middleware

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds; the API answers most reads in a few ms, exports and path searches take longer.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels, extra: Iterable[tuple[str, str]] = ()) -> str:
    items = list(labels) + list(extra)
    if not items:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in items) + "}"


def _num(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


@dataclass
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    total: float = 0.0
    n: int = 0

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(BUCKETS, value)
        if i < len(BUCKETS):
            self.counts[i] += 1
        self.total += value
        self.n += 1


class Metrics:
    def __init__(self) -> None:
        self.requests: dict[Labels, int] = defaultdict(int)
        self.latency: dict[Labels, _Histogram] = defaultdict(_Histogram)
        self.in_flight = 0
        self.started = time.time()
        # (monotonic time, hops written so far by embedded workers), for a hops/s gauge that does
        # not depend on how often Prometheus scrapes.
        self._hop_samples: deque[tuple[float, int]] = deque(maxlen=13)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests[(("method", method), ("route", route), ("status", str(status)))] += 1
        self.latency[(("method", method), ("route", route))].observe(seconds)

    def sample_hops(self, total: int) -> None:
        self._hop_samples.append((time.monotonic(), total))

    def hops_per_second(self) -> float:
        if len(self._hop_samples) < 2:
            return 0.0
        (t0, h0), (t1, h1) = self._hop_samples[0], self._hop_samples[-1]
        return (h1 - h0) / (t1 - t0) if t1 > t0 else 0.0

    def render(self, gauges: Mapping[str, tuple[str, str, Mapping[Labels, float]]]) -> str:
        """All series; `gauges` maps a metric name to (type, help, {labels: value})."""
        out: list[str] = []
        out += ["# HELP tracer_http_requests_total HTTP requests served, by route template and status.",
                "# TYPE tracer_http_requests_total counter"]
        for labels, n in sorted(self.requests.items()):
            out.append(f"tracer_http_requests_total{_labels(labels)} {n}")
        out += ["# HELP tracer_http_request_duration_seconds Time to produce a response, by route template.",
                "# TYPE tracer_http_request_duration_seconds histogram"]
        for labels, h in sorted(self.latency.items()):
            cumulative = 0
            for bound, c in zip(BUCKETS, h.counts, strict=True):
                cumulative += c
                out.append(f"tracer_http_request_duration_seconds_bucket{_labels(labels, [('le', _num(bound))])} "
                           f"{cumulative}")
            out.append(f"tracer_http_request_duration_seconds_bucket{_labels(labels, [('le', '+Inf')])} {h.n}")
            out.append(f"tracer_http_request_duration_seconds_sum{_labels(labels)} {h.total!r}")
            out.append(f"tracer_http_request_duration_seconds_count{_labels(labels)} {h.n}")
        out += ["# HELP tracer_http_requests_in_flight Requests being served now.",
                "# TYPE tracer_http_requests_in_flight gauge",
                f"tracer_http_requests_in_flight {self.in_flight}",
                "# HELP tracer_process_start_time_seconds Unix time the API process started.",
                "# TYPE tracer_process_start_time_seconds gauge",
                f"tracer_process_start_time_seconds {self.started!r}"]
        for name, (kind, help_text, series) in sorted(gauges.items()):
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
            for labels, value in sorted(series.items()):
                out.append(f"{name}{_labels(labels)} {_num(value)}")
        return "\n".join(out) + "\n"


def route_label(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def metrics_middleware(metrics: Metrics) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        metrics.in_flight += 1
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            metrics.in_flight -= 1
            metrics.observe(request.method, route_label(request), status, time.perf_counter() - started)

    return middleware
