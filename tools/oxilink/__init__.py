"""Host-side tools for oxilink (CPython)."""

__version__ = "0.1.0"
