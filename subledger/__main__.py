"""``python -m subledger``: the same as the ``subledger`` command."""

from subledger.cli import main

main()
