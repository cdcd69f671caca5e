"""The recording loopback server now ships in :mod:`pipecored.testing` (the kit plugin authors
get); these names stay importable from here for the tests that still do."""

from __future__ import annotations

from pipecored.testing import FakeServer, RecordedRequest

__all__ = ["FakeServer", "RecordedRequest"]
