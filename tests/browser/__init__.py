"""Browser tests: real JupyterLab and Voilà driven by Debian's chromium (see harness.py)."""
