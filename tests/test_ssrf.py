"""The SSRF inventory: every way a URL can point the fetch at this machine, a private network or a cloud metadata
service, each refused with the guard's message and without a connection to the target.

Every probe runs in a child process inside a user, network and mount namespace that the test makes itself
(`unshare -rnm`), so no packet can leave the machine: in there loopback is the only interface, the private and
metadata addresses are added to it, one canary listener on every address waits for a connection that must never
come, and /etc/hosts is a bind mount that maps test names onto those addresses, so real name resolution returns
them. The first hop of a redirect is a server on 127.0.0.2, which the probe's `AddressPolicy` counts as public;
every other address is judged by the real rules. The probe adds its own audit hook after the guard's, so it
records every connection the guard let through. This file is the probe too: `python tests/test_ssrf.py CONFIG`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIRST_HOP = "127.0.0.2"  # the probe's own server; the only non-public address its policy lets through
FIRST_PORT = 8000
CANARY_PORT = 9000  # the port of every target URL; a dual-stack listener there sees any connection that is made
PROBE_SECONDS = 240

#: Addresses put on the namespace's loopback, so a connection to any of them would reach the canary.
ADDED_ADDRESSES = ["10.0.0.5", "172.16.0.5", "192.168.1.5", "100.64.0.5", "169.254.169.254", "fd00::5",
                   "fd00:ec2::254"]

#: The namespace's /etc/hosts: names that resolve, for real, to each kind of non-public address.
HOSTS = {
    "loop.ssrf.test": "127.0.0.1",
    "ten.ssrf.test": "10.0.0.5",
    "cgnat.ssrf.test": "100.64.0.5",
    "meta.ssrf.test": "169.254.169.254",
    "v6.ssrf.test": "fd00::5",
    "v6meta.ssrf.test": "fd00:ec2::254",
    "mapped.ssrf.test": "::ffff:127.0.0.1",
    "metadata.google.internal": "169.254.169.254",
}

REFUSED = re.compile(
    r"^Refused to fetch from '([^']+)': it points to (?:a|the) non-public address.* this server does not fetch for "
    r"safety; set QASR_ALLOW_PRIVATE_URLS=1 only on a trusted deployment\.$"
)
NOT_WEB = "Only http:// and https:// URLs can be fetched, not file://; paste a web address."


def _target(host: str) -> str:
    return f"http://{host}:{CANARY_PORT}/latest/meta-data/"


#: URLs that go straight to a non-public address, by category.
DIRECT = {
    "loopback": ["127.0.0.1", "127.1", "2130706433", "0x7f000001", "0177.0.0.1", "[::1]", "[::ffff:127.0.0.1]",
                 "localhost", "LOCALHOST.", "x.localhost", "0.0.0.0", "[::]", "127.0.0.3"],
    "private": ["10.0.0.5", "172.16.0.5", "172.31.255.254", "192.168.1.5", "100.64.0.5", "[fc00::5]", "[fd00::5]"],
    "link-local": ["169.254.1.5", "[fe80::1]", "[fe80::1%25lo]"],
    "metadata": ["169.254.169.254", "metadata.google.internal", "[fd00:ec2::254]", "metadata", "instance-data"],
    "embedded-v4": ["[::ffff:10.0.0.5]", "[::ffff:a9fe:a9fe]", "[::127.0.0.1]", "[64:ff9b::a9fe:a9fe]",
                    "[64:ff9b::7f00:1]", "[2002:a9fe:a9fe::1]", "[2002:7f00:1::1]"],
    "name": list(HOSTS),
}

#: Redirect targets: every code for the main kinds, 302 for the rest. (target URL, what the refusal names)
REDIRECT_MAIN = [(_target("127.0.0.1"), "127.0.0.1"), (_target("10.0.0.5"), "10.0.0.5"),
                 (_target("169.254.169.254"), "169.254.169.254"), (_target("[::1]"), "::1"),
                 (_target("ten.ssrf.test"), "10.0.0.5"), ("file:///etc/passwd", None)]
REDIRECT_MORE = [(_target(host), named) for host, named in [
    ("localhost", None),  # ::1 or 127.0.0.1, whichever the resolver gives first
    ("127.1", None), ("0.0.0.0", "0.0.0.0"), ("[::]", "::"),
    ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"), ("172.16.0.5", "172.16.0.5"), ("192.168.1.5", "192.168.1.5"),
    ("100.64.0.5", "100.64.0.5"), ("[fd00::5]", "fd00::5"), ("[fd00:ec2::254]", "fd00:ec2::254"),
    ("metadata.google.internal", "169.254.169.254"), ("[::ffff:a9fe:a9fe]", "::ffff:a9fe:a9fe"),
    ("[64:ff9b::a9fe:a9fe]", "64:ff9b::a9fe:a9fe"), ("v6.ssrf.test", "fd00::5"),
    ("mapped.ssrf.test", "::ffff:127.0.0.1"),
]]


def _first_hop(path: str, to: str) -> str:
    return f"http://{FIRST_HOP}:{FIRST_PORT}/{path}?to={urllib.parse.quote(to, safe='')}"


def _cases() -> list[dict]:
    """Every probe: id, URL, whether the early DNS check is fooled (rebinding), and what the error must say."""
    cases = []
    for category, hosts in DIRECT.items():
        for host in hosts:
            cases.append({"id": f"direct-{category}-{host}", "url": _target(host), "rebind": False, "expect": None})
    for name, address in HOSTS.items():  # the early check is fooled into "public"; the connection is not
        cases.append({"id": f"rebind-{name}", "url": _target(name), "rebind": True, "expect": address})
    for code in (301, 302, 307, 308):
        for to, named in REDIRECT_MAIN:
            cases.append({"id": f"redirect-{code}-{to}", "url": _first_hop(f"redirect/{code}", to), "rebind": False,
                          "expect": named})
    for to, named in REDIRECT_MORE:
        cases.append({"id": f"redirect-302-{to}", "url": _first_hop("redirect/302", to), "rebind": False,
                      "expect": named})
    for to, named in [(_target("10.0.0.5"), "10.0.0.5"), (_target("169.254.169.254"), "169.254.169.254"),
                      ("file:///etc/passwd", None)]:
        cases.append({"id": f"twice-{to}", "url": _first_hop("twice", to), "rebind": False, "expect": named})
        cases.append({"id": f"refresh-{to}", "url": _first_hop("refresh", to), "rebind": False, "expect": named})
    for to, named in [(_target("10.0.0.5") + "a.wav", "10.0.0.5"), (_target("[::1]") + "a.wav", "::1"),
                      (_target("metadata.google.internal") + "a.wav", "metadata.google.internal")]:
        cases.append({"id": f"page-media-{to}", "url": _first_hop("page", to), "rebind": False, "expect": named})
    cases.append({"id": "direct-file", "url": "file:///etc/passwd", "rebind": False, "expect": None})
    return cases


CASES = _cases()
CONTROLS = ["127.0.0.1", "10.0.0.5", "169.254.169.254", "::1", "fd00:ec2::254"]


def _namespace_works() -> str | None:
    """Why the namespace probes cannot run here, or None."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs unshare and ip (util-linux, iproute2)"
    result = subprocess.run(["unshare", "-rn", "true"], capture_output=True, text=True)
    if result.returncode != 0:
        return f"`unshare -rn true` failed here ({result.stderr.strip() or result.returncode})"
    return None


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> dict:
    """Run every case once in a fresh namespace; the results by case id, and the canary's and controls' counts."""
    reason = _namespace_works()
    if reason:
        pytest.skip(f"SSRF probes need a network namespace of their own: {reason}")
    work = tmp_path_factory.mktemp("ssrf")
    hosts = work / "hosts"
    hosts.write_text("127.0.0.1 localhost\n::1 localhost ip6-localhost\n"
                     + "".join(f"{address} {name}\n" for name, address in HOSTS.items()))
    config = work / "config.json"
    config.write_text(json.dumps({"cases": CASES, "controls": CONTROLS}))
    setup = ["ip link set lo up", f"ip addr add {FIRST_HOP}/32 dev lo"]
    setup += [f"ip {'-6 ' if ':' in a else ''}addr add {a}/{128 if ':' in a else 32} dev lo" for a in ADDED_ADDRESSES]
    script = " && ".join([*setup, f"mount --bind {hosts} /etc/hosts",
                          f"exec {sys.executable} {Path(__file__).resolve()} {config}"])
    result = subprocess.run(["unshare", "-rnm", "sh", "-c", script], cwd=REPO, capture_output=True, text=True,
                            timeout=PROBE_SECONDS)
    assert result.returncode == 0, f"probe failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_refused_with_the_guards_message_and_no_connection(probe, case):
    got = probe["results"][case["id"]]
    error = got["error"]
    assert error is not None, f"{case['url']} was fetched"
    if case["url"].startswith("file:") or "file%3A" in case["url"]:
        assert error == NOT_WEB
    else:
        match = REFUSED.match(error)
        assert match, error
        if case["expect"]:
            assert match.group(1) == case["expect"] or f"address {case['expect']} " in error, error
    assert all(c == [FIRST_HOP, FIRST_PORT] for c in got["connects"]), f"connected to {got['connects']}"


def test_no_target_ever_saw_a_connection(probe):
    assert probe["canary_during_cases"] == [], "a private target was reached"


def test_the_canary_and_the_first_hop_do_work(probe):
    """Controls: outside a fetch the targets are reachable, and a fetch through the first hop succeeds."""
    assert sorted(probe["canary_controls"]) == sorted(CONTROLS)
    assert probe["allowed_fetch"] == 2.0
    assert probe["allowed_redirect"] == 2.0


# ------------------------------------------------------------------------------------------------------------------
# The probe itself, run inside the namespace


def _serve_first_hop(wav: bytes):
    """The redirecting, refreshing and linking server on FIRST_HOP:FIRST_PORT."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            parts = urllib.parse.urlsplit(self.path)
            to = urllib.parse.parse_qs(parts.query).get("to", [""])[0]
            route = parts.path.strip("/").split("/")
            if route[0] == "redirect":
                self._answer(int(route[1]), b"", "text/plain", location=to)
            elif route[0] == "twice":
                self._answer(302, b"", "text/plain", location=f"/redirect/302?to={urllib.parse.quote(to, safe='')}")
            elif route[0] == "refresh":
                page = f'<html><head><meta http-equiv="refresh" content="0; url={to}"></head><body></body></html>'
                self._answer(200, page.encode(), "text/html")
            elif route[0] == "page":
                page = f'<html><head><title>Clip</title></head><body><audio src="{to}"></audio></body></html>'
                self._answer(200, page.encode(), "text/html")
            elif route == ["media", "tone.wav"]:
                self._answer(200, wav, "audio/wav")
            else:
                self._answer(404, b"not found", "text/plain")

        def _answer(self, status: int, body: bytes, ctype: str, location: str | None = None) -> None:
            self.send_response(status)
            if location is not None:
                self.send_header("Location", location)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer((FIRST_HOP, FIRST_PORT), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _canary() -> list[str]:
    """A dual-stack listener on [::]:CANARY_PORT: the local address of every connection it accepts."""
    import socket

    seen: list[str] = []
    listener = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    listener.bind(("::", CANARY_PORT))
    listener.listen(64)

    def accept() -> None:
        while True:
            conn, _ = listener.accept()
            local = conn.getsockname()[0]
            seen.append(local[7:] if local.startswith("::ffff:") else local)
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    return seen


def _probe(config_path: str) -> None:
    """Run every case and print one JSON line of results."""
    import ipaddress
    import socket

    sys.path.insert(0, str(REPO))
    from qasr_space import fetch
    from qasr_space.errors import FetchError
    from qasr_space.settings import Settings
    from tests.media import tone, write_media

    config = json.loads(Path(config_path).read_text())
    wav_path = write_media(Path(config_path).with_name("tone.wav"), tone(2.0), 16000, "wav")
    _serve_first_hop(wav_path.read_bytes())
    canary = _canary()

    first_hop = ipaddress.ip_address(FIRST_HOP)
    is_public = lambda ip: ip == first_hop or fetch.is_public_address(ip)  # noqa: E731
    policies = {
        False: fetch.AddressPolicy(is_public=is_public),
        True: fetch.AddressPolicy(resolve=lambda host, port: ["93.184.216.34"], is_public=is_public),
    }
    settings = Settings(allow_private_urls=False, url_timeout_seconds=5.0, url_retries=0, url_deadline_seconds=30.0)
    connects: list[list] = []
    recording = [False]

    def record(event: str, args: tuple) -> None:
        if recording[0] and event == "socket.connect" and isinstance(args[1], tuple):
            connects.append([str(args[1][0]), int(args[1][1])])

    fetch._add_audit_hook()
    sys.addaudithook(record)  # after the guard's hook: sees only the connections the guard let through

    def run(url: str, rebind: bool) -> tuple[str | None, float | None]:
        try:
            with fetch.fetch_audio(url, settings, policy=policies[rebind]) as fetched:
                return None, round(fetched.duration, 1)
        except FetchError as exc:
            return str(exc), None

    results = {}
    for case in config["cases"]:
        connects.clear()
        recording[0] = True
        error, _ = run(case["url"], case["rebind"])
        recording[0] = False
        results[case["id"]] = {"error": error, "connects": list(connects)}
    time.sleep(0.3)
    during = list(canary)

    allowed_fetch = run(f"http://{FIRST_HOP}:{FIRST_PORT}/media/tone.wav", False)[1]
    allowed_redirect = run(_first_hop("redirect/302", "/media/tone.wav"), False)[1]
    for address in config["controls"]:  # outside any fetch: the canary does see these
        socket.create_connection((address, CANARY_PORT), timeout=5).close()
    deadline = time.monotonic() + 5
    while len(canary) < len(during) + len(config["controls"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    print(json.dumps({"results": results, "canary_during_cases": during, "canary_controls": canary[len(during):],
                      "allowed_fetch": allowed_fetch, "allowed_redirect": allowed_redirect}))


if __name__ == "__main__":
    _probe(sys.argv[1])
