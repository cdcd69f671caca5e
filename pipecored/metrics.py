"""Prometheus metrics, with SPEC section 5's names and labels.

Every metric lives in the registry given to :class:`Metrics` (one per daemon; tests pass a fresh
``CollectorRegistry``). No tenant label on histograms: their cardinality would be tenants x
buckets.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    platform_collector,
    process_collector,
)

from pipecored import __version__

# prometheus-client adds a <name>_created gauge beside every counter and histogram series (one
# more series each, per tenant) that no rule, dashboard or query here reads: Prometheus ingests
# each as a series of its own. Process-wide, like the client's own switch.
disable_created_metrics()  # type: ignore[no-untyped-call]  # the client leaves it unannotated

# From a fast loopback call up to the default provider timeout (15 s) and beyond.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60)

_TENANT_METRICS_LABEL = "tenant"


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        process_collector.ProcessCollector(registry=r)
        platform_collector.PlatformCollector(registry=r)
        Info("pipecore", "pipecored build information", registry=r).info({"version": __version__})
        self.messages_accepted = Counter(
            "pipecore_messages_accepted_total",
            "Messages accepted by the send API",
            ["tenant", "channel"],
            registry=r,
        )
        self.messages = Counter(
            "pipecore_messages_total",
            "Outbound messages reaching a status (sent, delivered, read, failed)",
            ["tenant", "channel", "provider", "status"],
            registry=r,
        )
        self.provider_requests = Counter(
            "pipecore_provider_requests_total",
            "Calls to providers by outcome",
            ["tenant", "channel", "provider", "outcome"],
            registry=r,
        )
        self.provider_duration = Histogram(
            "pipecore_provider_request_duration_seconds",
            "Duration of provider calls",
            ["channel", "provider"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.provider_up = Gauge(
            "pipecore_provider_up",
            "1 while a tenant's provider takes calls, 0 while its circuit is open",
            ["tenant", "channel", "provider"],
            registry=r,
        )
        self.failovers = Counter(
            "pipecore_failovers_total",
            "Messages moved from a provider to a fallback",
            ["tenant", "channel", "from_provider", "to_provider"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "pipecore_queue_depth", "Messages queued or being sent", registry=r
        )
        self.queue_oldest_age = Gauge(
            "pipecore_queue_oldest_age_seconds",
            "Age of the oldest message queued or being sent",
            registry=r,
        )
        self.auth_failures = Counter(
            "pipecore_auth_failures_total",
            "API requests refused for their key (missing, malformed, unknown) or throttled after"
            " too many such refusals from one address",
            ["reason"],
            registry=r,
        )
        self.webhooks = Counter(
            "pipecore_webhooks_total",
            "Provider callbacks by result",
            ["tenant", "provider", "result"],
            registry=r,
        )
        self.inbound = Counter(
            "pipecore_inbound_messages_total",
            "Messages received from customers",
            ["tenant", "channel", "provider"],
            registry=r,
        )
        self.config_reloads = Counter(
            "pipecore_config_reloads_total", "Configuration reloads attempted", registry=r
        )
        self.config_reload_errors = Counter(
            "pipecore_config_reload_errors_total",
            "Configuration reloads that found an invalid file",
            registry=r,
        )
        self.config_last_reload_successful = Gauge(
            "pipecore_config_last_reload_successful",
            "1 if the last configuration reload succeeded",
            registry=r,
        )
        self.config_last_reload_success_timestamp = Gauge(
            "pipecore_config_last_reload_success_timestamp_seconds",
            "When the configuration was last reloaded successfully",
            registry=r,
        )
        self.alerts = Counter(
            "pipecore_alerts_total",
            "Alerts handed to a receiver, by result (sent, failed, retried)",
            ["receiver", "result"],
            registry=r,
        )

        # Events to the tenants' platforms (SPEC section 8). endpoint is the URL without its
        # query (a token there stays out of the metrics).
        self.event_deliveries = Counter(
            "pipecore_event_deliveries_total",
            "Attempts at posting an event to a tenant's endpoint, by outcome (delivered; retry:"
            " failed, to be tried again; failed: given up)",
            ["tenant", "endpoint", "outcome"],
            registry=r,
        )
        self.events_outbox_depth = Gauge(
            "pipecore_events_outbox_depth",
            "Event deliveries waiting to be posted (due or waiting for a retry)",
            registry=r,
        )
        self.events_outbox_oldest_age = Gauge(
            "pipecore_events_outbox_oldest_age_seconds",
            "Age of the oldest event with a delivery still pending",
            registry=r,
        )
        self.experiment_messages = Counter(
            "pipecore_experiment_messages_total",
            "Messages of a provider experiment's arm, accepted (status accepted) and reaching a"
            " status (sent, delivered, read, failed)",
            ["tenant", "channel", "experiment", "arm", "status"],
            registry=r,
        )
        self.suppressions = Counter(
            "pipecore_suppressions_total",
            "Recipients suppressed or lifted (action: suppressed, unsuppressed), by source"
            " (keyword, bounce, complaint, unsubscribe, api)",
            ["tenant", "channel", "action", "source"],
            registry=r,
        )

    def count_experiment(
        self, tenant: str, channel: str, experiment: str | None, arm: str | None, status: str
    ) -> None:
        """A message of an experiment's arm accepted or reaching ``status``; nothing for a
        message outside any experiment."""
        if experiment is not None and arm is not None:
            self.experiment_messages.labels(tenant, channel, experiment, arm, status).inc()

    def config_reloaded(self, success: bool, at: float) -> None:
        self.config_reloads.inc()
        self.config_last_reload_successful.set(1 if success else 0)
        if success:
            self.config_last_reload_success_timestamp.set(at)
        else:
            self.config_reload_errors.inc()

    def prune_provider_up(self, configured: Callable[[str, str, str], bool]) -> None:
        """Drop the provider_up series of (tenant, channel, provider) no longer configured."""
        with self.provider_up._lock:
            series = list(self.provider_up._metrics)
        for labels in series:
            if not configured(*labels):
                self.provider_up.remove(*labels)

    def forget_tenant(self, tenant_id: str) -> None:
        """Drop every series of a removed tenant."""
        for metric in (
            self.messages_accepted,
            self.messages,
            self.provider_requests,
            self.provider_up,
            self.failovers,
            self.webhooks,
            self.inbound,
            self.event_deliveries,
            self.suppressions,
            self.experiment_messages,
        ):
            for labels in _series_of(metric, tenant_id):
                metric.remove(*labels)


def _series_of(metric: Counter | Gauge, tenant_id: str) -> list[tuple[str, ...]]:
    names = metric._labelnames  # prometheus_client keeps no public accessor for these
    index = names.index(_TENANT_METRICS_LABEL)
    with metric._lock:
        return [tuple(labels) for labels in metric._metrics if labels[index] == tenant_id]
