"""Fetch the audio of a URL with yt-dlp, safely enough for a public Space.

`fetch_audio(url)` downloads the best audio of a YouTube (or any other yt-dlp site) page or of a direct link
to a media file into a per-request folder under `FETCH_ROOT`, decodes it with `audio.load_audio` and removes the
folder when the `with` block ends, whatever happens. Every failure is a `FetchError` with one clear sentence.

Bounded from the first byte: one deadline (`QASR_URL_DEADLINE`, from the moment `fetch_audio` starts) and one
byte budget (`QASR_MAX_UPLOAD_MB`) cover extraction, every page body and the download. Every response yt-dlp
opens goes through `YoutubeDL.urlopen`, whose reads are counted and taken in bounded pieces, so a huge page is
refused once the budget is spent rather than after it is all in memory. When the deadline passes, a timer shuts
down every socket the fetch opened, so even a read blocked on a server that trickles a byte every few seconds
returns at once, and no new connection is allowed.

Safety (server-side request forgery): only http/https, and unless `QASR_ALLOW_PRIVATE_URLS=1` no connection may
reach a loopback, private, link-local, multicast, reserved or cloud-metadata address. The rule is enforced where
it cannot be bypassed: a `socket.connect` audit hook (`sys.addaudithook`, public API) sees the numeric address of
every connection the fetching thread makes, redirect hops, retries and fragments included, and refuses before
the connection is attempted. It is scoped to fetch work by a context variable, so the rest of the process is
unaffected; yt-dlp runs in the calling thread (one fragment at a time, no worker threads). It fails closed: before
each fetch a self-test must see the hook refuse a loopback connect, and if it does not, or if a package that opens
connections outside Python's sockets is installed (yt-dlp's curl_cffi handler), URL input answers 503 instead.
Proxies from the environment are ignored (yt-dlp connects directly), so every connection is one the hook checks.
The URL's host is also checked before yt-dlp starts, and the format URLs before the download, for a fast,
friendly error. yt-dlp never hands a URL to ffmpeg here (native downloaders only, and its ffmpeg is disabled).

YouTube: its extractor needs a JavaScript runtime to solve the player challenges; the `deno` package ships the
binary, which is handed to yt-dlp by path (so it works off PATH too); deno runs the solver with no network
access. From a data-centre IP YouTube often answers "Sign in to confirm you're not a bot"; `QASR_YTDLP_COOKIES`
may name a Netscape cookies file exported from a logged-in browser, which each request uses through a private
copy (yt-dlp writes the jar back).
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import errno
import functools
import importlib.util
import ipaddress
import logging
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
import urllib.parse
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence, Union

import numpy as np

from .audio import SAMPLE_RATE, format_duration, load_audio
from .errors import AudioError, AudioTooLongError, FetchError, shown
from .settings import Settings

_logger = logging.getLogger(__name__)

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

#: Every fetch's temporary folder lives under this one root (swept for leftovers elsewhere).
FETCH_ROOT = os.path.join(tempfile.gettempdir(), "qasr-fetch")
#: How often a fetch checks whether it was cancelled or is past its deadline.
WATCH_SECONDS = 0.1

#: yt-dlp protocols whose downloaders fetch through `YoutubeDL.urlopen`, i.e. within the budget.
_GUARDED_PROTOCOLS = frozenset({
    "http", "https", "m3u8", "m3u8_native", "http_dash_segments", "http_dash_segments_generator", "f4m", "ism",
})

#: Packages through which yt-dlp would open connections outside Python's sockets, where the hook cannot see them.
_UNGUARDED_TRANSPORTS = ("curl_cffi",)

#: Schemes `YoutubeDL.urlopen` may open: the web, and `data:` URLs (inline manifests; no network).
_OPENABLE_SCHEMES = frozenset({"http", "https", "data"})

#: How much a response read without a size takes at a time, so the budget is checked as the body arrives.
_READ_PIECE = 64 * 1024

#: Names that always mean this machine or the cloud metadata service: answered without a DNS lookup.
_KNOWN_NAMES = {
    **dict.fromkeys(("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"), "127.0.0.1"),
    **dict.fromkeys(("metadata", "metadata.google.internal", "metadata.goog", "instance-data",
                     "instance-data.ec2.internal"), "169.254.169.254"),
}

_NUMERIC_IPV4 = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}$", re.IGNORECASE)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_PRIVATE_HINT = "set QASR_ALLOW_PRIVATE_URLS=1 only on a trusted deployment"


@dataclass
class FetchedAudio:
    """What `fetch_audio` downloaded; `path` lives only until the `with` block ends."""

    path: str  # the downloaded file, inside the per-request temp dir
    title: str
    duration: float  # seconds, from the decoded audio
    url: str  # the page yt-dlp resolved the URL to (its `webpage_url`), else the URL as given
    audio: np.ndarray = field(repr=False)  # decoded float32 16 kHz mono samples, so callers don't decode twice


def is_public_address(ip: IPAddress) -> bool:
    """True for a globally routable unicast address; False for loopback, private, link-local, metadata, etc.

    IPv6 forms that embed an IPv4 address (IPv4-mapped ::ffff:a.b.c.d, IPv4-compatible ::a.b.c.d, NAT64
    64:ff9b::/96, 6to4 2002::/16) are judged by the IPv4 address they reach.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return False  # fe80::1%eth0 and friends: only meaningful on a local link
        embedded = ip.ipv4_mapped
        if embedded is None and (ip in _NAT64 or (ip in _IPV4_COMPATIBLE and int(ip) > 1)):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public_address(embedded)
        if ip.sixtofour is not None and not is_public_address(ip.sixtofour):
            return False
        if ip.is_site_local:
            return False
    return ip.is_global and not (
        ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved or ip.is_unspecified
    )


def _system_resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, as the connection would see them; local names need no lookup."""
    name = host.rstrip(".").lower()
    if name in _KNOWN_NAMES or name.endswith(".localhost"):
        return [_KNOWN_NAMES.get(name, "127.0.0.1")]
    return [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


@dataclass(frozen=True)
class AddressPolicy:
    """How the guard resolves a host and which addresses count as public; a seam for tests, defaults for real use.

    `resolve` serves the early host checks only; the connect hook judges the address each connection really uses.
    """

    resolve: Callable[[str, int], Sequence[str]] = _system_resolve
    is_public: Callable[[IPAddress], bool] = is_public_address


def is_url(text: str) -> bool:
    """True if `text` looks like a URL (`scheme://...`) rather than a file path; the scheme is checked later."""
    text = text.strip()
    return bool(re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://\S+$", text))


def check_url_allowed(url: str, settings: Settings | None = None, *, policy: AddressPolicy | None = None) -> None:
    """Raise `FetchError` unless `url` is http(s) with a host that resolves only to public addresses.

    With `settings.allow_private_urls` only the scheme and host are checked. IP literals and the names of this
    machine are judged without any network traffic; other names are resolved (a DNS lookup, no connection).
    """
    settings = settings or Settings.from_env()
    host, port = _split_url(url)
    if not settings.allow_private_urls:
        _check_host(host, port, policy or AddressPolicy())


@contextlib.contextmanager
def fetch_audio(
    url: str, settings: Settings | None = None, *, policy: AddressPolicy | None = None,
    cancelled: threading.Event | None = None,
) -> Iterator[FetchedAudio]:
    """Download and decode the audio of `url`; the temporary folder is removed when the block ends.

    Raises `FetchError` (one sentence) for a refused or broken URL, a live stream, more than
    `settings.max_upload_mb` read, more than `settings.url_deadline_seconds` taken, audio over
    `settings.max_audio_seconds`, a server where the connection guard is not in force (503), or `cancelled` set
    (the request was cancelled: the download stops within `WATCH_SECONDS`). `policy` is for tests only.
    """
    settings = settings or Settings.from_env()
    url = url.strip()
    guard = _Guard(settings, policy or AddressPolicy(), cancelled)  # the deadline counts from here
    check_url_allowed(url, settings, policy=policy)
    _require_connect_guard()
    os.makedirs(FETCH_ROOT, exist_ok=True)
    tmpdir = tempfile.mkdtemp(dir=FETCH_ROOT)
    try:
        fetched = _download(url, settings, guard, tmpdir)
        yield fetched
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------------
# The address rules


def _split_url(url: str) -> tuple[str, int]:
    """(host, port) of an http(s) URL, or `FetchError`."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise FetchError(f"{shown(url)} is not a valid URL ({exc}); paste the full http(s) address.") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise _scheme_refusal(scheme)
    if not parts.hostname:
        raise FetchError(f"{shown(url)} has no host name; paste the full http(s) address.")
    return parts.hostname, port or (443 if scheme == "https" else 80)


def _scheme_refusal(scheme: str) -> FetchError:
    shown_scheme = f"{scheme}://" if scheme else "a URL without a scheme"
    return FetchError(f"Only http:// and https:// URLs can be fetched, not {shown_scheme}; paste a web address.")


def _check_host(host: str, port: int, policy: AddressPolicy) -> None:
    """Refuse `host` if it is, or resolves to, any non-public address."""
    name = host.strip("[]").rstrip(".").lower()
    literal = _ip_literal(name)
    if literal is not None:
        if not policy.is_public(literal):
            raise _private_refusal(host, literal)
        return
    try:
        addresses = [ipaddress.ip_address(a) for a in policy.resolve(name, port)]
    except (OSError, UnicodeError, ValueError) as exc:
        raise FetchError(f"The host '{host}' could not be found (DNS lookup failed); check the URL.") from exc
    if not addresses:
        raise FetchError(f"The host '{host}' has no address; check the URL.")
    for address in addresses:
        if not policy.is_public(address):
            raise _private_refusal(host, address)


def _ip_literal(name: str) -> IPAddress | None:
    """The address if `name` is an IP literal, including legacy IPv4 forms (2130706433, 0x7f.1, 127.1)."""
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        pass
    if _NUMERIC_IPV4.match(name):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(name))
        except OSError:
            return None
    return None


def _private_refusal(host: str, address: IPAddress) -> FetchError:
    literal = str(address) == host.strip("[]").split("%", 1)[0]
    where = "a non-public address" if literal else f"the non-public address {address}"
    return FetchError(
        f"Refused to fetch from '{host}': it points to {where} (loopback, private network, link-local or cloud "
        f"metadata), which this server does not fetch for safety; {_PRIVATE_HINT}."
    )


# ---------------------------------------------------------------------------------------------------------------
# The guard: the connect hook, the deadline and the byte budget of one fetch

#: The guard of the fetch running in this context, if any; the audit hook acts only where one is set.
_CURRENT_GUARD: contextvars.ContextVar[_Guard | None] = contextvars.ContextVar("qasr_fetch_guard", default=None)
_HOOK_LOCK = threading.Lock()
_hook_added = False


class _ConnectRefused(PermissionError):
    """Raised by the audit hook in place of a connection the guard forbids; the connect is never attempted."""


class _Guard:
    """One fetch's rules and limits; remembers its first failure so that it beats yt-dlp's wording."""

    def __init__(self, settings: Settings, policy: AddressPolicy, cancelled: threading.Event | None = None) -> None:
        self.enforce = not settings.allow_private_urls
        self.policy = policy
        self.budget = int(settings.max_upload_mb * 1024 * 1024)
        self.bytes_read = 0
        self.error: FetchError | None = None
        self._settings = settings
        self._deadline = time.monotonic() + settings.url_deadline_seconds
        self._cancelled = cancelled
        self._stopped = False
        self._sockets: list[tuple[Callable[[], Any], int, tuple[int, int] | None]] = []
        self._lock = threading.Lock()

    def fail(self, error: FetchError) -> FetchError:
        """Record `error` unless an earlier failure is already recorded; return the one that stands."""
        with self._lock:
            self.error = self.error or error
            return self.error

    def check_url(self, url: str) -> None:
        """Scheme, host name and its resolved addresses of a URL about to be opened (a friendly early check)."""
        try:
            host, port = _split_url(url)
            if self.enforce:
                _check_host(host, port, self.policy)
        except FetchError as exc:
            self.fail(exc)
            raise

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Scope the connect hook to this guard in this context, and stop everything at the deadline or on cancel."""
        finished = threading.Event()
        watcher = threading.Thread(target=self._watch, args=(finished,), name="qasr-fetch-watch", daemon=True)
        token = _CURRENT_GUARD.set(self)
        watcher.start()
        try:
            yield
        finally:
            finished.set()
            _CURRENT_GUARD.reset(token)

    def _watch(self, finished: threading.Event) -> None:
        """Every `WATCH_SECONDS` until the fetch ends: stop it once it is cancelled or past its deadline."""
        while not finished.wait(min(WATCH_SECONDS, max(0.0, self._deadline - time.monotonic()))):
            if self._cancelled is not None and self._cancelled.is_set():
                self.stop(FetchError("The download was cancelled."))
                return
            if time.monotonic() >= self._deadline:
                self.stop(_deadline_error(self._settings))
                return

    def stop(self, error: FetchError) -> None:
        """Fail the fetch: shut down every socket it opened (blocked reads return at once) and refuse new ones."""
        with self._lock:
            self.error = self.error or error
            self._stopped = True
            sockets, self._sockets = self._sockets, []
        for sock_ref, fd, identity in sockets:
            _shut_down(sock_ref(), fd, identity)

    def count(self, nbytes: int) -> None:
        """Add bytes read to the budget; over it, the fetch is stopped."""
        self.bytes_read += nbytes
        if self.bytes_read > self.budget:
            self.stop(_over_budget(self._settings))

    def on_connect(self, sock: Any, address: Any) -> None:
        """The `socket.connect` audit event: refuse what the rules forbid, before connecting; else remember it."""
        try:
            refusal = self._connect_refusal(sock, address)
        except Exception:  # a bug in the check must not let the connection through
            refusal = FetchError("The address check failed on this server, so the URL was not fetched; try again.")
        with self._lock:
            if refusal is None and not self._stopped:
                self._sockets.append(_socket_handle(sock))
                return
            reason = refusal or self.error
            self.error = self.error or reason
        raise _ConnectRefused(errno.EACCES, str(reason))

    def _connect_refusal(self, sock: Any, address: Any) -> FetchError | None:
        if not self.enforce:
            return None
        if sock.family not in (socket.AF_INET, socket.AF_INET6) or not isinstance(address, tuple):
            return FetchError(
                f"Refused a connection to {shown(address)}, which is not an internet address, so the URL was "
                "not fetched; upload the file instead."
            )
        host = str(address[0])
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return FetchError(
                f"Refused to connect to {shown(host)} by name (only checked numeric addresses are allowed), so "
                "the URL was not fetched; upload the file instead."
            )
        scoped = len(address) >= 4 and bool(address[3])
        if scoped or not self.policy.is_public(ip):
            return _private_refusal(host, ip)
        return None


def _socket_handle(sock: Any) -> tuple[Callable[[], Any], int, tuple[int, int] | None]:
    """What `_shut_down` needs later: the socket (weakly), its descriptor and the identity of the socket behind it."""
    fd = sock.fileno()
    try:
        sock_ref: Callable[[], Any] = weakref.ref(sock)
    except TypeError:  # a bare _socket.socket
        sock_ref = lambda: None  # noqa: E731
    try:
        stat = os.fstat(fd)
        identity: tuple[int, int] | None = (stat.st_dev, stat.st_ino)
    except OSError:
        identity = None
    return sock_ref, fd, identity


def _shut_down(sock: Any, fd: int, identity: tuple[int, int] | None) -> None:
    """Shut a connection down in both directions, whoever holds it now.

    An SSL wrapper takes the descriptor over from the socket the hook saw (which is then detached), so the
    descriptor is used through a duplicate, and only while it still names the same socket.
    """
    try:
        if sock is not None and sock.fileno() == fd:
            sock.shutdown(socket.SHUT_RDWR)
        elif identity is not None:
            with socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM) as same:
                stat = os.fstat(same.fileno())
                if (stat.st_dev, stat.st_ino) == identity:
                    same.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed: nothing left to stop


def _audit(event: str, args: tuple) -> None:
    """The process-wide audit hook: hands `socket.connect` to the guard of the fetch in scope, if any."""
    if event == "socket.connect":
        guard = _CURRENT_GUARD.get()
        if guard is not None:
            guard.on_connect(*args)


def _add_audit_hook() -> None:
    """Install the audit hook, once per process (audit hooks cannot be removed)."""
    global _hook_added
    with _HOOK_LOCK:
        if not _hook_added:
            sys.addaudithook(_audit)
            _hook_added = True


def _connect_guard_problem() -> str | None:
    """Why the connect guard cannot be trusted in this process, or None when a self-test shows it in force."""
    for name in _UNGUARDED_TRANSPORTS:
        if importlib.util.find_spec(name) is not None:
            return f"the '{name}' package is installed and yt-dlp would connect through it unchecked; uninstall it"
    _add_audit_hook()
    probe = _Guard(Settings(allow_private_urls=False), AddressPolicy(is_public=lambda ip: False))
    with socket.socket() as target, socket.socket() as client:
        target.bind(("127.0.0.1", 0))  # bound but not listening: even an unchecked connect would reach nothing
        token = _CURRENT_GUARD.set(probe)
        try:
            client.connect(target.getsockname())
        except _ConnectRefused:
            if probe.error is not None:
                return None
        except OSError:
            pass
        finally:
            _CURRENT_GUARD.reset(token)
    return "its connect hook failed a self-test (another audit hook may have kept it out); run without that hook"


def _require_connect_guard() -> None:
    """Refuse to fetch (503) unless the connect guard is in force."""
    problem = _connect_guard_problem()
    if problem is not None:
        err = FetchError(
            f"URL input is turned off on this server because the address guard is not in force: {problem}."
        )
        err.status_code = 503
        raise err


def _deadline_error(settings: Settings) -> FetchError:
    seconds = settings.url_deadline_seconds
    limit = f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"
    return FetchError(
        f"Fetching this URL took longer than {limit} and was stopped (the server is too slow); try again later "
        "or upload the file."
    )


def _over_budget(settings: Settings) -> FetchError:
    err = FetchError(
        f"This URL sent more than this server's {settings.max_upload_mb:g} MB limit (pages and media together), so "
        "it is too large to fetch; link a shorter recording or the media file itself."
    )
    err.status_code = 413
    return err


# ---------------------------------------------------------------------------------------------------------------
# yt-dlp, with every response it opens counted against the guard


@functools.lru_cache(maxsize=None)
def _guarded_ydl_class() -> type:
    """Build (once) the YoutubeDL subclass whose `urlopen` checks the scheme and counts every byte read.

    Imported lazily: yt-dlp takes about a second to import and only URL input needs it.
    """
    import yt_dlp
    from yt_dlp.networking.exceptions import RequestError

    class GuardStopped(RequestError):
        """Raised inside yt-dlp's networking so it unwinds like any failed request."""

    class GuardedYoutubeDL(yt_dlp.YoutubeDL):
        def __init__(self, params: dict, guard: _Guard) -> None:
            self._qasr_guard = guard
            super().__init__(params)

        def urlopen(self, req: Any) -> Any:
            guard = self._qasr_guard
            url = req if isinstance(req, str) else str(getattr(req, "url", None) or getattr(req, "full_url", ""))
            scheme = url.split(":", 1)[0].lower() if ":" in url else ""
            if scheme not in _OPENABLE_SCHEMES:
                raise GuardStopped(str(guard.fail(_scheme_refusal(scheme))))
            if guard.error is not None:
                raise GuardStopped(str(guard.error))
            try:
                response = super().urlopen(req)
            except RequestError as exc:
                redirect = re.search(r"\b([a-z][a-z0-9+.-]*)://", str(exc), re.IGNORECASE)
                if redirect and redirect.group(1).lower() not in ("http", "https"):  # a redirect to file:// etc.
                    guard.fail(_scheme_refusal(redirect.group(1).lower()))
                raise
            response.read = functools.partial(_counted_read, response.read, response.close, guard, GuardStopped)
            return response

    return GuardedYoutubeDL


def _counted_read(
    read: Callable[[int], bytes], close: Callable[[], None], guard: _Guard, stopped: type, amt: int | None = None
) -> bytes:
    """A response's `read` within the budget: never more than it allows at once, and bounded pieces for read().

    Once the fetch has failed (budget, deadline, refusal) the response is closed, so the server sees the hang-up now.
    """
    if amt is None or amt < 0:
        return b"".join(iter(lambda: _counted_read(read, close, guard, stopped, _READ_PIECE), b""))
    data = read(min(amt, max(guard.budget - guard.bytes_read, 0) + 1))
    guard.count(len(data))
    if guard.error is not None:
        close()
        raise stopped(str(guard.error))
    return data


def _js_runtimes() -> dict:
    """yt-dlp's JavaScript runtime for YouTube: the `deno` package's binary by path, else deno from PATH."""
    try:
        from deno import find_deno_bin

        return {"deno": {"path": find_deno_bin()}}
    except (ImportError, OSError):
        return {"deno": {}}


class _Log:
    """Collects yt-dlp's messages (nothing reaches the console) for the error text."""

    def __init__(self) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=200)

    def debug(self, msg: str) -> None:
        self.lines.append(msg)

    info = warning = error = debug

    def mentions(self, pattern: str) -> bool:
        return any(re.search(pattern, line, re.IGNORECASE) for line in self.lines)


class _StopDownload(Exception):
    """Raised from the progress hook when a download passes the size limit."""


def _download(url: str, settings: Settings, guard: _Guard, tmpdir: str) -> FetchedAudio:
    """Extract, check, download and decode; every failure leaves as a `FetchError`."""
    from yt_dlp.utils import DownloadError, YoutubeDLError

    max_bytes = int(settings.max_upload_mb * 1024 * 1024)
    log = _Log()
    hook_stop: list[FetchError] = []

    def progress(status: dict) -> None:
        done = status.get("downloaded_bytes") or 0
        total = status.get("total_bytes") or 0
        if max(done, total) > max_bytes:
            hook_stop.append(_too_large(settings, None))
            raise _StopDownload()

    params: dict[str, Any] = {
        "format": "bestaudio/best",
        "noplaylist": True,
        "playlist_items": "1",
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "logger": log,
        "color": "no_color",
        "paths": {"home": tmpdir, "temp": tmpdir},
        "outtmpl": {"default": "%(title).80B.%(ext)s"},
        "windowsfilenames": True,
        "overwrites": True,
        "max_filesize": max_bytes,
        "socket_timeout": settings.url_timeout_seconds,
        "retries": settings.url_retries,
        "fragment_retries": settings.url_retries,
        "extractor_retries": settings.url_retries,
        "progress_hooks": [progress],
        # Connect directly, never through a proxy from the environment: the connect hook checks every address.
        "proxy": "",
        # One fragment at a time, in this thread: the hook's scope is this thread's context.
        "concurrent_fragment_downloads": 1,
        # Never let ffmpeg fetch a URL (it would bypass the guard): native downloaders only, ffmpeg disabled.
        "external_downloader": {"default": "native"},
        "hls_prefer_native": True,
        "ffmpeg_location": os.path.join(tmpdir, "ffmpeg-disabled"),
        "fixup": "never",
        "updatetime": False,
        "check_formats": False,
        "js_runtimes": _js_runtimes(),
    }
    if settings.ytdlp_cookies:
        params["cookiefile"] = _private_cookies(settings.ytdlp_cookies, tmpdir)

    try:
        ydl_class = _guarded_ydl_class()
    except ImportError as exc:  # yt-dlp missing: nothing can be fetched
        err = FetchError(f"URL input is not available on this server ({exc}); install 'yt-dlp[default]'.")
        err.status_code = 503
        raise err from exc
    try:
        with guard.active(), ydl_class(params, guard) as ydl:
            info = ydl.extract_info(url, download=False)
            entry = _first_entry(info, settings, log)
            _check_info(entry, settings, guard)
            done = ydl.process_ie_result(entry, download=True)
    except _StopDownload:
        raise (guard.error or hook_stop[0]) from None
    except FetchError:
        raise
    except Exception as exc:  # yt-dlp's DownloadError and whatever else escapes it: never a traceback
        if guard.error is not None:
            raise guard.error from None
        if hook_stop:
            raise hook_stop[0] from None
        if not isinstance(exc, (DownloadError, YoutubeDLError, OSError)):
            _logger.debug("unexpected error from yt-dlp for %s", url, exc_info=True)
        raise _explain(exc, url, settings, log) from None

    if guard.error is not None:  # e.g. one HLS fragment refused and skipped, or the deadline hit at the very end
        raise guard.error
    path = _downloaded_path(done, tmpdir)
    if path is None:
        raise _nothing_downloaded(settings, log)
    if os.path.getsize(path) > max_bytes:
        raise _too_large(settings, os.path.getsize(path))
    try:
        audio = load_audio(path, max_seconds=settings.max_audio_seconds, min_seconds=settings.min_audio_seconds)
    except AudioTooLongError as exc:
        length = re.search(r"is (\S+(?: s)?) long", str(exc))
        err = FetchError(
            f"The audio at this URL is {f'{length.group(1)} long, over' if length else 'longer than'} this "
            f"server's {format_duration(settings.max_audio_seconds)} limit; pick a shorter recording."
        )
        err.status_code = exc.status_code
        raise err from None
    except AudioError as exc:
        raise FetchError(str(exc)) from None
    title = str(done.get("title") or entry.get("title") or os.path.splitext(os.path.basename(path))[0])
    return FetchedAudio(
        path=path,
        title=title,
        duration=len(audio) / SAMPLE_RATE,
        url=str(done.get("webpage_url") or url),
        audio=audio,
    )


def _private_cookies(path: str, tmpdir: str) -> str:
    """A per-request copy of the cookies file: yt-dlp writes the jar back, and requests must not share one."""
    copy = os.path.join(tmpdir, "cookies.txt")
    try:
        shutil.copyfile(path, copy)
    except OSError as exc:
        raise FetchError(
            f"The cookies file set in QASR_YTDLP_COOKIES ({path}) cannot be read ({exc.strerror or exc}); "
            "fix the path or unset it."
        ) from exc
    return copy


def _first_entry(info: Any, settings: Settings, log: _Log) -> dict:
    """The video itself, or the first item of a playlist (yt-dlp was told to take only that one)."""
    while isinstance(info, dict) and info.get("_type") in ("playlist", "multi_video"):
        entries = [e for e in (info.get("entries") or []) if e]
        if not entries:
            if log.mentions(r"larger than max-filesize"):
                raise _too_large(settings, None)
            raise FetchError("This URL is an empty playlist, so there is nothing to fetch; link a single video.")
        info = entries[0]
    if not isinstance(info, dict):
        raise _nothing_downloaded(settings, log)
    return info


def _nothing_downloaded(settings: Settings, log: _Log) -> FetchError:
    """yt-dlp skips some things silently (a file over `max_filesize`); say why when its log tells."""
    if log.mentions(r"larger than max-filesize"):
        return _too_large(settings, None)
    return FetchError("Nothing was downloaded from this URL (the media may be unavailable); try another link.")


def _check_info(info: dict, settings: Settings, guard: _Guard) -> None:
    """Refuse before downloading what the metadata already rules out: live, too long, too large, unguarded."""
    live = info.get("live_status")
    if info.get("is_live") or live == "is_live":
        raise FetchError("This URL is a live stream, which cannot be transcribed; link a finished recording.")
    if live == "is_upcoming":
        raise FetchError("This URL is a scheduled stream that has not started; link a finished recording.")
    duration = info.get("duration")
    if isinstance(duration, (int, float)) and duration > settings.max_audio_seconds:
        err = FetchError(
            f"The media at this URL is {format_duration(duration)} long, over this server's "
            f"{format_duration(settings.max_audio_seconds)} limit; pick a shorter recording."
        )
        err.status_code = 413
        raise err
    formats = info.get("requested_formats") or [info]
    size = sum(int(f.get("filesize") or f.get("filesize_approx") or 0) for f in formats)
    if size > settings.max_upload_mb * 1024 * 1024:
        raise _too_large(settings, size)
    for fmt in formats:
        protocol = str(fmt.get("protocol") or "")
        for part in protocol.split("+"):
            if part and part not in _GUARDED_PROTOCOLS:
                raise FetchError(
                    f"This media is only offered over {part}, which this server does not fetch; "
                    "try another link or upload the file."
                )
        for key in ("url", "manifest_url", "fragment_base_url"):
            if isinstance(fmt.get(key), str) and fmt[key].split(":", 1)[0].lower() in ("http", "https"):
                guard.check_url(fmt[key])


def _downloaded_path(info: Any, tmpdir: str) -> str | None:
    """The file yt-dlp wrote, if it exists inside `tmpdir`."""
    while isinstance(info, dict) and info.get("_type") in ("playlist", "multi_video"):
        info = next((e for e in info.get("entries") or [] if e), None)
    if not isinstance(info, dict):
        return None
    candidates = [d.get("filepath") for d in (info.get("requested_downloads") or [])]
    candidates += [info.get("filepath"), info.get("_filename")]
    root = os.path.realpath(tmpdir)
    for candidate in candidates:
        if not candidate:
            continue
        real = os.path.realpath(candidate)
        if os.path.commonpath([root, real]) == root and os.path.isfile(real):
            return real
    return None


def _too_large(settings: Settings, size: int | None) -> FetchError:
    got = f" ({size / 1024 / 1024:.0f} MB)" if size else ""
    err = FetchError(
        f"The media at this URL is too large{got}: this server downloads at most {settings.max_upload_mb:g} MB; "
        "link a shorter recording."
    )
    err.status_code = 413
    return err


def _explain(exc: BaseException, url: str, settings: Settings, log: _Log) -> FetchError:
    """One sentence for a yt-dlp failure, from the exception chain and, failing that, yt-dlp's own words."""
    from yt_dlp.networking.exceptions import HTTPError as YdlHTTPError
    from yt_dlp.utils import GeoRestrictedError, UnsupportedError

    chain = _exception_chain(exc)
    text = " ".join(str(e) for e in chain) + " " + " ".join(log.lines)
    host = urllib.parse.urlsplit(url).hostname or url

    if re.search(r"confirm you.?re not a bot|Sign in to confirm", text, re.IGNORECASE):
        return FetchError(
            "YouTube blocked this server (\"Sign in to confirm you're not a bot\"); the operator can set "
            "QASR_YTDLP_COOKIES to a cookies file from a logged-in browser, or upload the audio instead."
        )
    for e in chain:
        if isinstance(e, YdlHTTPError):
            return _http_status_error(e.status, e.reason)
    match = re.search(r"HTTP Error (\d{3}):?\s*([^\n(]*)", text)
    if match:
        return _http_status_error(int(match.group(1)), match.group(2).strip())
    if any(isinstance(e, UnsupportedError) for e in chain) or "Unsupported URL" in text:
        return FetchError(
            "No audio or video was found at this URL: it is neither a media file nor a page from a site "
            "yt-dlp supports; link the video page or the media file itself."
        )
    if any(isinstance(e, GeoRestrictedError) for e in chain):
        return FetchError("This media is not available from the server's country; upload the audio instead.")
    if any(isinstance(e, (TimeoutError, socket.timeout)) for e in chain) or re.search(
        r"timed? ?out", text, re.IGNORECASE
    ):
        return FetchError(
            f"The server at {host} did not answer within {settings.url_timeout_seconds:g} s (timed out); "
            "try again later."
        )
    if re.search(r"Name or service not known|getaddrinfo failed|nodename nor servname|Temporary failure in name",
                 text):
        return FetchError(f"The host '{host}' could not be found (DNS lookup failed); check the URL.")
    if re.search(r"Connection refused|ConnectionRefused", text):
        return FetchError(f"Could not connect to {host} (connection refused); check the URL.")
    if re.search(r"Requested format is not available|No video formats found|Only images are available", text):
        if log.mentions(r"JavaScript runtime"):
            err = FetchError(
                "YouTube offered no downloadable audio because this server has no JavaScript runtime for its "
                "player challenges; the operator should install the 'deno' package."
            )
            err.status_code = 503
            return err
        return FetchError("No downloadable audio format was found at this URL; try another link.")
    if re.search(r"Private video|members-only|This video is private", text, re.IGNORECASE):
        return FetchError("This video is private or members-only, so it cannot be fetched.")
    if re.search(r"Video unavailable|has been removed|no longer available|is not available", text, re.IGNORECASE):
        return FetchError("This video is unavailable (removed, private or blocked); try another link.")
    return FetchError(f"Could not fetch the URL: {_clean_ytdlp_message(chain)}")


def _http_status_error(status: int, reason: str) -> FetchError:
    if status == 404:
        return FetchError("The URL was not found (HTTP 404); check the link.")
    if status in (401, 403):
        return FetchError(f"The server refused access to this URL (HTTP {status}); it may need a login.")
    if status == 429:
        return FetchError("The server is rate-limiting this server (HTTP 429); try again later.")
    return FetchError(f"The server answered HTTP {status}{f' {reason}' if reason else ''}; check the link.")


def _exception_chain(exc: BaseException) -> list[BaseException]:
    """`exc` and every cause yt-dlp tucked inside it (exc_info, cause, __cause__, __context__)."""
    seen: list[BaseException] = []
    todo: list[Any] = [exc]
    while todo and len(seen) < 20:
        e = todo.pop(0)
        if not isinstance(e, BaseException) or any(e is s for s in seen):
            continue
        seen.append(e)
        exc_info = getattr(e, "exc_info", None)
        if isinstance(exc_info, tuple) and len(exc_info) > 1:
            todo.append(exc_info[1])
        todo += [getattr(e, "cause", None), e.__cause__, e.__context__]
    return seen


def _clean_ytdlp_message(chain: list[BaseException]) -> str:
    """yt-dlp's most specific message as one sentence, without 'ERROR:', '[extractor] id:' or bug-report text."""
    raw = ""
    for e in chain:
        raw = str(getattr(e, "orig_msg", None) or e) or raw
        if raw:
            break
    msg = re.sub(r"^(?:ERROR:\s*)?(?:\[[^\]]+\]\s*)?(?:[\w-]+:\s+)?", "", raw.strip())
    msg = re.split(r";\s*please report this issue|\s*\(caused by", msg)[0].strip()
    msg = " ".join(msg.split())[:300] or "unknown error"
    return msg if msg.endswith((".", "!", "?")) else msg + "."
