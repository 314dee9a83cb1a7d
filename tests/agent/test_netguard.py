"""The SSRF deny-list and the network allow-list."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

import pytest

from agents.agent import netguard
from agents.agent.netguard import (
    BlockedAddress,
    NetworkPolicy,
    ResolutionError,
    deny_reason,
    resolve_vetted,
)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "non-public"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("93.184.216.34", None),
        ("2606:4700::1111", None),
    ],
)
def test_deny_reason(address: str, reason: str | None) -> None:
    assert deny_reason(ipaddress.ip_address(address)) == reason


def test_policy_entries() -> None:
    policy = NetworkPolicy.from_entries(
        ["127.0.0.0/8", " 10.0.0.5 ", "[fd00::]/8", "Build.Internal.", "*.corp.example", "", "-x-"]
    )
    assert policy.allows_address(ipaddress.ip_address("127.4.5.6"))
    assert policy.allows_address(ipaddress.ip_address("10.0.0.5"))
    assert not policy.allows_address(ipaddress.ip_address("10.0.0.6"))
    assert policy.allows_address(ipaddress.ip_address("fd12::1"))
    assert policy.allows_host("build.internal")
    assert policy.allows_host("api.corp.example")
    assert not policy.allows_host("corp.example")
    assert not policy.allows_host("evilbuild.internal")


def test_policy_reads_the_agent_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHYARD_HTTP_ALLOW", "192.168.0.0/16, intranet")
    policy = NetworkPolicy.for_job(["10.0.0.0/8"])
    for address in ("192.168.7.7", "10.9.9.9"):
        policy.check_address("h", ipaddress.ip_address(address))
    policy.check_address("intranet", ipaddress.ip_address("172.16.0.1"))
    with pytest.raises(BlockedAddress, match=r"172\.16\.0\.1, a private address"):
        policy.check_address("other", ipaddress.ip_address("172.16.0.1"))


def _fake_resolver(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> None:
    real = socket.getaddrinfo

    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in answers:
            return real(host, port, *args, **kwargs) if host[0].isdigit() else _fail(host)
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in answers[host]
        ]

    def _fail(host: str) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(netguard.socket, "getaddrinfo", getaddrinfo)


def test_a_host_is_refused_if_any_of_its_addresses_is_denied(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fake_resolver(monkeypatch, {"mixed.test": ["93.184.216.34", "10.0.0.1"]})
    with pytest.raises(BlockedAddress, match=r"mixed\.test resolves to 10\.0\.0\.1, a private"):
        asyncio.run(resolve_vetted("mixed.test", 80, NetworkPolicy()))
    allowed = NetworkPolicy.from_entries(["10.0.0.0/8"])
    assert asyncio.run(resolve_vetted("mixed.test", 80, allowed)) == ["93.184.216.34", "10.0.0.1"]


def test_resolution_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_resolver(monkeypatch, {})
    with pytest.raises(ResolutionError, match=r"cannot resolve nowhere.test \(Name or service"):
        asyncio.run(resolve_vetted("nowhere.test", 80, NetworkPolicy()))


def test_ip_literals_are_checked_without_resolution() -> None:
    assert asyncio.run(resolve_vetted("[::1]", 80, NetworkPolicy.from_entries(["::1"]))) == ["::1"]
    with pytest.raises(BlockedAddress, match=r"^blocked: 127.0.0.1, a loopback address"):
        asyncio.run(resolve_vetted("127.0.0.1", 80, NetworkPolicy()))
