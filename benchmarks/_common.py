"""Helpers shared by the benchmarks: an emulator in its own process, machine facts, table text."""

from __future__ import annotations

import os
import platform
import signal
import ssl
import subprocess
import sys
import types


class ServedEmulator:
    """`python -m dashnb serve` in a child process, usable as a dashnb endpoint.

    The throughput and capacity benchmarks load the server hard; in its own process it gets
    its own core and interpreter lock instead of competing with the client being measured.
    Server-side counters come from GET /_emulator/stats over one kept-alive connection, opened
    here once so that reading them never adds a connection to what a mode is charged with.
    """

    is_emulator = True

    def __init__(self, *, rtt_ms: float = 0.0, tls: str = "1.3") -> None:
        cmd = [sys.executable, "-m", "dashnb", "serve", "--rtt-ms", str(rtt_ms), "--tls", tls]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        fields = {}
        for line in self._proc.stdout:
            if ":" in line:
                key, _, value = line.strip().partition(":")
                fields[key.strip()] = value.strip()
            if line.startswith("Serving until"):
                break
        else:
            raise RuntimeError("the emulator process exited before it was ready")
        self.base_url = fields["native base URL"]
        self.compatible_base_url = fields["compatible base URL"]
        self.ca_path = fields["CA certificate"]
        self.api_key = fields["test API key"]
        self.url = self.base_url[: -len("/api/v1")]
        self.options = types.SimpleNamespace(rtt_ms=rtt_ms, tls=tls, ttfb_ms=0.0)
        tls_text = "plain HTTP" if tls == "off" else f"TLS {tls}"
        self.label = f"emulator process {self.url.split('//')[1]} ({tls_text}, rtt {rtt_ms:g} ms)"
        import requests

        self._http = requests.Session()
        self._http.trust_env = False
        self._http.verify = self.ca_path
        self.stats()

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_path)

    def stats(self) -> dict:
        r = self._http.get(self.url + "/_emulator/stats", timeout=10)
        r.raise_for_status()
        return r.json()

    def stop(self) -> None:
        self._http.close()
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc.stdout.close()

    def __enter__(self) -> ServedEmulator:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def machine() -> dict:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import importlib.metadata as md

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "dashscope": md.version("dashscope"),
        "aiohttp": md.version("aiohttp"),
        "requests": md.version("requests"),
        "urllib3": md.version("urllib3"),
    }


def table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def pct(x: float) -> str:
    return f"{x:+.1f}%"
