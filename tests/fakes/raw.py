"""The connection-dropping server now ships in :mod:`pipecored.testing` as ``FlakyServer``;
this name stays importable from here for the tests that still do."""

from __future__ import annotations

from pipecored.testing import FlakyServer

__all__ = ["FlakyServer"]
