"""Endpoints: DashScope(base_url=...), DASHSCOPE_HTTP_BASE_URL, and how real-service and emulator
sessions treat the proxy and CA-bundle variables, on real sockets.

A "real-service-style" endpoint here is ``DashScope(base_url=<emulator>)``: the real endpoint class,
pointed at a local emulator, with the emulator's CA reaching it only through the environment.
"""

from __future__ import annotations

import asyncio
import pickle
import pprint
import secrets
import select
import socket
import threading

import aiohttp
import pytest
import requests
import trustme

import dashnb
from dashnb._endpoint import EmulatorLike, Endpoint, as_emulator

GEN = "/services/aigc/text-generation/generation"
BODY = {"model": "qwen-plus", "input": {"prompt": "hi"}, "parameters": {}}
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
CA_VARS = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")


@pytest.fixture
def clean_env(monkeypatch):
    """No proxy, CA-bundle, key or base-URL variables from the machine running the tests."""
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.lower(), raising=False)
    for var in (*CA_VARS, "DASHSCOPE_API_KEY", "DASHSCOPE_HTTP_BASE_URL", "DASHSCOPE_COMPATIBLE_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


# ---- DashScope(base_url=...) ------------------------------------------------------------------


def test_base_url_replaces_the_region_url_and_derives_the_compatible_one(clean_env):
    ep = dashnb.DashScope(base_url="https://ws-1.ap-southeast-1.maas.aliyuncs.com/api/v1/")
    assert ep.base_url == "https://ws-1.ap-southeast-1.maas.aliyuncs.com/api/v1"
    assert ep.compatible_base_url == "https://ws-1.ap-southeast-1.maas.aliyuncs.com/compatible-mode/v1"
    assert repr(ep) == (
        "DashScope(region='intl', base_url='https://ws-1.ap-southeast-1.maas.aliyuncs.com/api/v1', api_key=<missing>)"
    )
    assert ep.label == "DashScope at https://ws-1.ap-southeast-1.maas.aliyuncs.com"
    gateway = dashnb.DashScope(base_url="https://gw.example.com/dashscope/api/v1")
    assert gateway.compatible_base_url == "https://gw.example.com/dashscope/compatible-mode/v1"
    assert gateway != ep and gateway == dashnb.DashScope(base_url="https://gw.example.com/dashscope/api/v1")
    assert dashnb.DashScope() != dashnb.DashScope(base_url="https://dashscope-intl.aliyuncs.com/api/v2")
    assert repr(dashnb.DashScope("cn")) == "DashScope(region='cn', api_key=<missing>)"  # unchanged without one


def test_a_base_url_of_another_shape_needs_compatible_base_url(clean_env):
    ep = dashnb.DashScope(base_url="https://gw.example.com/llm")
    assert ep.base_url == "https://gw.example.com/llm"
    with pytest.raises(ValueError, match="compatible_base_url"):
        ep.compatible_base_url
    ep = dashnb.DashScope(base_url="https://gw.example.com/llm", compatible_base_url="https://gw.example.com/oai/")
    assert ep.compatible_base_url == "https://gw.example.com/oai"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://gw.example.com/api/v1", "https://"),
        ("https:///{secret}/api/v1", "no host name"),
        ("https://user:{secret}@gw.example.com/api/v1", "user name or password"),
        ("https://gw.example.com/api/v1?token={secret}", "query"),
        ("https://gw.example.com:99999/api/v1", "not a valid URL"),
        ("", "non-empty"),
    ],
)
def test_a_bad_base_url_is_refused_without_echoing_it(clean_env, url, reason):
    secret = secrets.token_hex(8)
    with pytest.raises(ValueError, match=reason) as info:
        dashnb.DashScope(base_url=url.format(secret=secret))
    assert secret not in str(info.value) and "gw.example.com" not in str(info.value)


def test_the_key_is_not_in_vars_or_a_pickle(clean_env):
    key = "sk-" + secrets.token_hex(12)
    ep = dashnb.DashScope(api_key=key, base_url="https://gw.example.com/api/v1")
    assert ep.api_key == key
    shown = [repr(ep), str(vars(ep)), pprint.pformat(vars(ep)), repr(ep.__dict__), ep._repr_html_()]
    assert not [t for t in shown if key in t or key[-12:] in t]
    assert "<secret>" in str(vars(ep))
    with pytest.raises(TypeError) as info:
        pickle.dumps(ep)
    assert key not in str(info.value)


def test_as_emulator_types_an_emulator_and_nothing_else(emu, clean_env):
    """What a measurement reads off an emulator (stats, options, stopped, configure) comes through
    one typed check: the emulator handle passes, the real service does not (with no key set its
    api_key raises, and the check must not read it), nor a look-alike that only says is_emulator."""
    assert as_emulator(emu) is emu and isinstance(emu, EmulatorLike) and isinstance(emu, Endpoint)
    assert as_emulator(dashnb.DashScope("intl")) is None

    class SaysSo:
        is_emulator = True

    assert as_emulator(SaysSo()) is None


# ---- endpoint() and the SDK's DASHSCOPE_HTTP_BASE_URL --------------------------------------------


def test_endpoint_honours_the_sdks_base_url_variables(clean_env):
    clean_env.setenv("DASHSCOPE_API_KEY", "sk-" + secrets.token_hex(12))
    clean_env.setenv("DASHSCOPE_HTTP_BASE_URL", "https://gw.example.com/api/v1")
    ep = dashnb.endpoint()
    assert isinstance(ep, dashnb.DashScope) and ep.base_url == "https://gw.example.com/api/v1"
    assert ep.compatible_base_url == "https://gw.example.com/compatible-mode/v1"
    clean_env.setenv("DASHSCOPE_COMPATIBLE_BASE_URL", "https://oai.example.com/v1")
    assert dashnb.endpoint().compatible_base_url == "https://oai.example.com/v1"
    clean_env.setenv("DASHSCOPE_HTTP_BASE_URL", "")  # empty counts as unset
    assert dashnb.endpoint().base_url == "https://dashscope-intl.aliyuncs.com/api/v1"
    clean_env.setenv("DASHSCOPE_HTTP_BASE_URL", "http://gw.example.com/api/v1")
    with pytest.raises(ValueError, match="environment variable DASHSCOPE_HTTP_BASE_URL must start with https://"):
        dashnb.endpoint()


def test_use_endpoint_points_the_sdk_at_a_custom_base_url(clean_env):
    dashscope = pytest.importorskip("dashscope")
    saved = dashscope.base_http_api_url, dashscope.api_key
    try:
        ep = dashnb.use_endpoint(dashnb.DashScope(api_key="sk-x", base_url="https://gw.example.com/api/v1"))
        assert dashscope.base_http_api_url == ep.base_url == "https://gw.example.com/api/v1"
    finally:
        dashscope.base_http_api_url, dashscope.api_key = saved


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),  # certifi
        ({"SSL_CERT_FILE": "/c"}, "/c"),
        ({"SSL_CERT_FILE": "/c", "CURL_CA_BUNDLE": "/b"}, "/b"),
        ({"SSL_CERT_FILE": "/c", "CURL_CA_BUNDLE": "/b", "REQUESTS_CA_BUNDLE": "/a"}, "/a"),
        ({"REQUESTS_CA_BUNDLE": "", "SSL_CERT_FILE": "/c"}, "/c"),  # empty is skipped, as requests does
    ],
)
def test_real_service_ca_bundle_comes_from_the_environment_in_requests_order(clean_env, env, expected):
    for var, value in env.items():
        clean_env.setenv(var, value)
    ep = dashnb.DashScope()
    assert ep.ca_path == expected and ep.trust_env is True


# ---- real sockets: proxies and trust ---------------------------------------------------------------


class ConnectProxy:
    """A plain-HTTP CONNECT proxy on 127.0.0.1 that tunnels to loopback only and records each tunnel."""

    def __init__(self) -> None:
        self.tunnels: list[str] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True, name="test-proxy").start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        with client:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            method, target = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")[:2]
            host, _, port = target.rpartition(":")
            if method != "CONNECT" or host != "127.0.0.1":
                client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            self.tunnels.append(target)
            with socket.create_connection((host, int(port))) as upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                peers = {client: upstream, upstream: client}
                while True:
                    ready, _, _ = select.select(list(peers), [], [], 30)
                    if not ready:
                        return
                    for sock in ready:
                        data = sock.recv(65536)
                        if not data:
                            return
                        peers[sock].sendall(data)

    def close(self) -> None:
        self._server.close()


@pytest.fixture
def proxy():
    p = ConnectProxy()
    yield p
    p.close()


def _calls(s, ep, n: int = 3) -> list[int]:
    """n sync and n async POSTs through a dashnb session; their status codes."""
    headers = {"Authorization": f"Bearer {ep.api_key}"}
    statuses = []
    for _ in range(n):
        r = s.requests.post(ep.base_url + GEN, json=BODY, headers=headers)
        statuses.append(r.status_code)
        r.close()

    async def main():
        for _ in range(n):
            async with s.aiohttp.post(ep.base_url + GEN, json=BODY, headers=headers) as r:
                await r.read()
                statuses.append(r.status)

    asyncio.run(main())
    return statuses


def _real_style(emu, clean_env):
    """DashScope pointed at the emulator; its CA comes only from SSL_CERT_FILE."""
    clean_env.setenv("SSL_CERT_FILE", emu.ca_path)
    return dashnb.DashScope(api_key=emu.api_key, base_url=emu.base_url)


def test_real_service_session_trusts_the_ca_named_by_ssl_cert_file(emu, clean_env, make_session):
    ep = _real_style(emu, clean_env)
    assert _calls(make_session(endpoint=ep), ep) == [200] * 6
    # negative control: without the variable, certifi's public CAs do not know the emulator's CA
    clean_env.delenv("SSL_CERT_FILE")
    s = make_session(endpoint=ep)
    with pytest.raises(requests.exceptions.SSLError):
        s.requests.post(ep.base_url + GEN, json=BODY)

    async def main():
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await s.aiohttp.post(ep.base_url + GEN, json=BODY)

    asyncio.run(main())


def test_real_service_session_goes_through_https_proxy(emu, clean_env, make_session, proxy):
    ep = _real_style(emu, clean_env)
    clean_env.setenv("HTTPS_PROXY", proxy.url)
    s = make_session(endpoint=ep)
    assert _calls(s, ep) == [200] * 6
    port = emu.base_url.split(":")[2].split("/")[0]
    # one tunnel per connection: one for the three sync calls, one for the three async ones
    assert proxy.tunnels == [f"127.0.0.1:{port}"] * 2
    assert emu.stats()["tcp_connections"] == 2 and emu.stats()["requests"] == 6
    assert s.stats()["connections_opened"] == 2


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "*"])
def test_real_service_session_honours_no_proxy(emu, clean_env, make_session, proxy, no_proxy):
    ep = _real_style(emu, clean_env)
    clean_env.setenv("HTTPS_PROXY", proxy.url)
    clean_env.setenv("NO_PROXY", no_proxy)
    assert _calls(make_session(endpoint=ep), ep) == [200] * 6
    assert proxy.tunnels == []  # straight to the server
    assert emu.stats()["tcp_connections"] == 2


def test_emulator_session_ignores_proxy_and_ca_variables(emu, clean_env, make_session, proxy, tmp_path):
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    clean_env.setenv("HTTPS_PROXY", proxy.url)
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        clean_env.setenv(var, str(other))  # a CA that would fail verification if it were used
    assert _calls(make_session(endpoint=emu), emu) == [200] * 6
    assert proxy.tunnels == []
    assert emu.stats()["tcp_connections"] == 2


def test_emulator_trust_is_not_widened_by_the_environment(emu, clean_env, make_session, tmp_path):
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))

    class Impostor:  # an emulator-style endpoint trusting another CA; the environment names the right one
        label, base_url, compatible_base_url, api_key = "x", emu.base_url, emu.compatible_base_url, emu.api_key
        ca_path, is_emulator = str(other), True

        def ssl_context(self):
            import ssl

            return ssl.create_default_context(cafile=self.ca_path)

    for var in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        clean_env.setenv(var, emu.ca_path)
    s = make_session(endpoint=Impostor())
    with pytest.raises(requests.exceptions.SSLError):
        s.requests.post(emu.base_url + GEN, json=BODY)

    async def main():
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await s.aiohttp.post(emu.base_url + GEN, json=BODY)

    asyncio.run(main())


# ---- the httpx clients (dashscope v2, openai): the same proxy rules -----------------------------------


def _httpx_calls(s, n: int = 3) -> list[int]:
    """n sync and n async POSTs through a session's httpx clients (the endpoint's key added by
    them, as for the v2 client); their status codes."""
    statuses = []
    for _ in range(n):
        statuses.append(s.httpx.post(GEN.lstrip("/"), json=BODY).status_code)

    async def main():
        for _ in range(n):
            statuses.append((await s.httpx_async.post(GEN.lstrip("/"), json=BODY)).status_code)

    asyncio.run(main())
    return statuses


@pytest.mark.parametrize("var", ["HTTPS_PROXY", "https_proxy", "ALL_PROXY"])
def test_real_service_httpx_clients_go_through_the_environments_proxy(emu, clean_env, make_session, proxy, var):
    ep = _real_style(emu, clean_env)
    clean_env.setenv(var, proxy.url)
    s = make_session(endpoint=ep)
    from dashnb import _observe

    with _observe.call_scope() as rec:  # the first call opens the tunnel: its CONNECT, then TLS inside
        assert s.httpx.post(GEN.lstrip("/"), json=BODY).status_code == 200
    first = rec.snapshot()
    # the connection counts as open once the service's TLS is up, not at the proxy's CONNECT
    assert first.reused is False and first.connect_s is not None and first.tls_s is not None, first
    assert _httpx_calls(s, n=2) == [200] * 4
    port = emu.base_url.split(":")[2].split("/")[0]
    # one tunnel per connection, as on the other paths: one for the sync client, one for the async
    assert proxy.tunnels == [f"127.0.0.1:{port}"] * 2
    assert emu.stats()["tcp_connections"] == 2 and emu.stats()["requests"] == 5
    # observed through the tunnel as directly: two connections opened, three reuses
    stats = s.stats()
    assert stats["connections_opened"] == 2 and stats["connections_reused"] == 3, stats


@pytest.mark.parametrize("stack", ["v2", "openai"])
def test_ask_on_the_httpx_stacks_goes_through_the_proxy_and_reuses_its_tunnel(
    emu, clean_env, make_session, proxy, stack, capsys
):
    ep = _real_style(emu, clean_env)
    clean_env.setenv("HTTPS_PROXY", proxy.url)
    s = make_session(endpoint=ep)
    first = dashnb.ask("hello", session=s, stack=stack)
    second = dashnb.ask("again", session=s, stack=stack)
    assert first.text and second.text
    assert len(proxy.tunnels) == 1 and emu.stats()["tcp_connections"] == 1
    assert first.reused is False and second.reused is True
    assert second.connection_id == first.connection_id and second.requests_on_connection == 2


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "*", "localhost,127.0.0.1"])
def test_real_service_httpx_clients_honour_no_proxy(emu, clean_env, make_session, proxy, no_proxy):
    ep = _real_style(emu, clean_env)
    clean_env.setenv("HTTPS_PROXY", proxy.url)
    clean_env.setenv("NO_PROXY", no_proxy)
    s = make_session(endpoint=ep)
    assert _httpx_calls(s) == [200] * 6
    assert proxy.tunnels == []  # straight to the server
    assert emu.stats()["tcp_connections"] == 2 and s.stats()["connections_opened"] == 2
    # control: a NO_PROXY naming other hosts only leaves this one on the proxy
    clean_env.setenv("NO_PROXY", "localhost,127.0.0.2,.example.com")
    assert _httpx_calls(make_session(endpoint=ep), n=1) == [200] * 2
    assert len(proxy.tunnels) == 2


def test_emulator_httpx_clients_ignore_the_proxy_variables(emu, clean_env, make_session, proxy):
    for var in ("HTTPS_PROXY", "ALL_PROXY", "HTTP_PROXY"):
        clean_env.setenv(var, proxy.url)
    s = make_session(endpoint=emu)
    assert _httpx_calls(s) == [200] * 6
    assert proxy.tunnels == []
    assert emu.stats()["tcp_connections"] == 2
    # control: in the same environment, the real-service endpoint's clients do use the proxy
    ep = _real_style(emu, clean_env)
    assert _httpx_calls(make_session(endpoint=ep), n=1) == [200] * 2
    assert len(proxy.tunnels) == 2


def test_a_proxy_that_refuses_the_tunnel_fails_the_call_not_silently_direct(emu, clean_env, make_session):
    """A proxy that answers 403 to every CONNECT: the httpx client reports the proxy's refusal
    (it does not fall back to a direct connection), and the proxy's password is not in the error."""
    ep = _real_style(emu, clean_env)
    refusing = socket.create_server(("127.0.0.1", 0))
    password = secrets.token_hex(8)

    def refuse():
        while True:
            try:
                conn, _ = refusing.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    threading.Thread(target=refuse, daemon=True).start()
    try:
        clean_env.setenv("HTTPS_PROXY", f"http://alice:{password}@127.0.0.1:{refusing.getsockname()[1]}")
        s = make_session(endpoint=ep)
        import httpx

        with pytest.raises(httpx.ProxyError) as info:
            s.httpx.post(GEN.lstrip("/"), json=BODY)
        assert "403" in str(info.value) and password not in str(info.value)
        assert password not in repr(s.httpx._mounts)
        assert emu.stats()["tcp_connections"] == 0
    finally:
        refusing.close()
