"""The sync engine: pulls connections, reconciles, plans and applies write-back."""
