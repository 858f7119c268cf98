"""The latency lab: its settings, its model (no widgets) and its ipywidgets view."""
