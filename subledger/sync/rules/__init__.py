"""Reconciliation rules. ``base`` defines what a rule is; ``builtin`` registers the built-in ones."""
