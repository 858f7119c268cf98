"""The notebook-scoped session manager: its per-loop clients and its notebook table."""
