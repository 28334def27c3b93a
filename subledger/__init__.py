"""subledger: a revenue subledger and connector hub for usage-based B2B billing."""

__version__ = "0.1.0"
