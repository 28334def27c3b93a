"""`subledger demo`: a made-up company on the built-in sandboxes, run end to end (see docs/demo.md)."""
