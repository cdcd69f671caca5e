"""How big each phase is: the full run, and the smoke run CI makes (same code, tiny sizes)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    accept_seconds: float
    warmup_seconds: float
    connections: int
    rounds: int  # pipecored and its floor measured alternately this many times each
    delivery_n: int
    apprise_n: int
    provider_delay: float
    tenant_counts: tuple[int, ...]
    edit_trials: int
    big_tenant_messages: int
    other_tenant_messages: int
    read_tenants: int
    read_requests: int
    profile_seconds: float
    phase_timeout: float  # the longest any one wait of a phase may take


FULL = Sizes(
    accept_seconds=10,
    warmup_seconds=2,
    connections=32,
    rounds=2,
    delivery_n=4000,
    apprise_n=4000,
    provider_delay=0.1,
    tenant_counts=(1000, 10000),
    edit_trials=5,
    big_tenant_messages=1_000_000,
    other_tenant_messages=2_000,
    read_tenants=100,
    read_requests=300,
    profile_seconds=8,
    phase_timeout=180,
)

SMOKE = Sizes(
    accept_seconds=1,
    warmup_seconds=0,
    connections=8,
    rounds=1,
    delivery_n=100,
    apprise_n=40,
    provider_delay=0.1,
    tenant_counts=(20, 100),
    edit_trials=2,
    big_tenant_messages=3_000,
    other_tenant_messages=50,
    read_tenants=5,
    read_requests=20,
    profile_seconds=1,
    phase_timeout=60,
)
