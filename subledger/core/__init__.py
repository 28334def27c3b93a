"""The canonical model and the vendor-neutral machinery every other layer builds on.

Nothing in ``subledger.core`` knows any vendor.
"""
