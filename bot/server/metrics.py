"""Prometheus metrics of the bot (SPEC §6.5), in a registry of their own per app."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


@dataclass(frozen=True, slots=True)
class Metrics:
    registry: CollectorRegistry
    deliveries: Counter
    ack_seconds: Histogram
    queue_depth: Gauge
    jobs: Counter
    job_seconds: Histogram
    bytes_synced: Counter

    @classmethod
    def create(cls) -> Metrics:
        registry = CollectorRegistry()
        return cls(
            registry=registry,
            deliveries=Counter(
                "imglife_webhook_deliveries",
                "Webhook deliveries",
                ["forge", "event", "outcome"],
                registry=registry,
            ),
            ack_seconds=Histogram(
                "imglife_webhook_ack_seconds",
                "Time to answer a delivery",
                ["forge"],
                buckets=ACK_BUCKETS,
                registry=registry,
            ),
            queue_depth=Gauge("imglife_job_queue_depth", "Jobs waiting for a worker", registry=registry),
            jobs=Counter("imglife_jobs", "Jobs run", ["handler", "outcome"], registry=registry),
            job_seconds=Histogram("imglife_job_seconds", "Job duration", ["handler"], registry=registry),
            bytes_synced=Counter("imglife_sync_bytes", "Bytes copied by sync", registry=registry),
        )
