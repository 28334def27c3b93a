"""CLI command modules; each exposes ``register(app)`` and is listed in ``subledger.cli``."""
