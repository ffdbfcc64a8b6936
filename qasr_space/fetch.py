"""Fetch the audio of a URL with yt-dlp, safely enough for a public Space.

`fetch_audio(url)` downloads the best audio of a YouTube (or any other yt-dlp site) page or of a direct link
to a media file into a per-request temporary folder, decodes it with `audio.load_audio` and removes the folder
when the `with` block ends, whatever happens. Every failure is a `FetchError` with one clear sentence.

Safety (server-side request forgery): only http/https, and unless `QASR_ALLOW_PRIVATE_URLS=1` no request may
reach a loopback, private, link-local, multicast, reserved or cloud-metadata address. That is enforced three
times: on the URL before yt-dlp starts; before every request yt-dlp sends, redirect hops included (a requests
`Session.send` wrapper inside our own yt-dlp request handler, which is the only HTTP handler the downloader
gets); and on the address each new connection actually reached (`getpeername`), which closes the DNS-rebinding
gap between our lookup and the connection's own. Limits: under rebinding a TCP handshake (no request bytes) can
still reach a private address before it is refused, and connections through an HTTP(S)_PROXY from the
environment are checked by host name only, since the proxy does the final lookup. yt-dlp never hands a URL to
ffmpeg here (native downloaders only, and its ffmpeg is disabled), because ffmpeg would bypass the guard.

YouTube: its extractor needs a JavaScript runtime to solve the player challenges; install
`yt-dlp[default,deno]` (the yt-dlp-ejs solver scripts and the deno binary). From a data-centre IP YouTube often
answers "Sign in to confirm you're not a bot"; `QASR_YTDLP_COOKIES` may name a Netscape cookies file exported
from a logged-in browser, which each request uses through a private copy (yt-dlp writes the jar back).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import ipaddress
import logging
import os
import re
import shutil
import socket
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence, Union

import numpy as np

from .audio import SAMPLE_RATE, format_duration, load_audio
from .errors import AudioError, AudioTooLongError, FetchError
from .settings import Settings

_logger = logging.getLogger(__name__)

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

#: A whole download (after extraction) may take at most this long, however slowly the server trickles data.
DOWNLOAD_DEADLINE_SECONDS = 1800.0

#: yt-dlp protocols whose downloaders fetch through `YoutubeDL.urlopen`, i.e. through the guard.
_GUARDED_PROTOCOLS = frozenset({
    "http", "https", "m3u8", "m3u8_native", "http_dash_segments", "http_dash_segments_generator", "f4m", "ism",
})

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
    """How the guard resolves a host and which addresses count as public; a seam for tests, defaults for real use."""

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
    url: str, settings: Settings | None = None, *, policy: AddressPolicy | None = None
) -> Iterator[FetchedAudio]:
    """Download and decode the audio of `url`; the temporary folder is removed when the block ends.

    Raises `FetchError` (one sentence) for a refused or broken URL, a live stream, a file over
    `settings.max_upload_mb` or audio over `settings.max_audio_seconds`. `policy` is for tests only.
    """
    settings = settings or Settings.from_env()
    url = url.strip()
    check_url_allowed(url, settings, policy=policy)
    guard = _Guard(settings, policy or AddressPolicy())
    tmpdir = tempfile.mkdtemp(prefix="qasr-fetch-")
    try:
        fetched = _download(url, settings, guard, tmpdir)
        yield fetched
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------------
# The address guard


def _split_url(url: str) -> tuple[str, int]:
    """(host, port) of an http(s) URL, or `FetchError`."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise FetchError(f"'{_short(url)}' is not a valid URL ({exc}); paste the full http(s) address.") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        shown = f"{scheme}://" if scheme else "a URL without a scheme"
        raise FetchError(f"Only http:// and https:// URLs can be fetched, not {shown}; paste a web address.")
    if not parts.hostname:
        raise FetchError(f"'{_short(url)}' has no host name; paste the full http(s) address.")
    return parts.hostname, port or (443 if scheme == "https" else 80)


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


class _Guard:
    """One request's view of the address rules; remembers the first refusal so it beats yt-dlp's wording."""

    def __init__(self, settings: Settings, policy: AddressPolicy) -> None:
        self.enabled = not settings.allow_private_urls
        self.policy = policy
        self.refusal: FetchError | None = None

    def check_url(self, url: str) -> None:
        """Before any request (every redirect hop included): scheme, host name and its resolved addresses."""
        try:
            host, port = _split_url(url)
            if self.enabled:
                _check_host(host, port, self.policy)
        except FetchError as exc:
            self.refusal = self.refusal or exc
            raise

    def check_peer(self, host: str, peer: str) -> None:
        """After a connection is made: the address it actually reached (closes the DNS-rebinding gap)."""
        if not self.enabled:
            return
        address = ipaddress.ip_address(peer.split("%", 1)[0])
        if not self.policy.is_public(address):
            exc = _private_refusal(host, address)
            self.refusal = self.refusal or exc
            raise exc


# ---------------------------------------------------------------------------------------------------------------
# yt-dlp with the guard wired into its HTTP


@functools.lru_cache(maxsize=None)
def _guarded_ydl_class() -> type:
    """Build (once) the YoutubeDL subclass whose only HTTP handler checks every hop and every connection.

    Imported lazily: yt-dlp takes about a second to import and only URL input needs it.
    """
    import urllib3
    import urllib3.connection
    import urllib3.exceptions
    import yt_dlp
    from yt_dlp.networking._requests import RequestsRH
    from yt_dlp.networking._urllib import UrllibRH
    from yt_dlp.networking.exceptions import RequestError

    class GuardRefused(RequestError):
        """Raised inside yt-dlp's networking so it unwinds like any failed request."""

    class PeerCheck:
        _qasr_guard: _Guard

        def _new_conn(self):  # type: ignore[no-untyped-def]
            sock = super()._new_conn()  # type: ignore[misc]
            try:
                self._qasr_guard.check_peer(self.host, sock.getpeername()[0])  # type: ignore[attr-defined]
            except FetchError as exc:
                sock.close()
                raise urllib3.exceptions.NewConnectionError(self, str(exc)) from exc
            return sock

    def guard_pool_manager(manager: Any, guard: _Guard) -> None:
        extra = {"_qasr_guard": guard}
        http_conn = type("QasrHTTPConnection", (PeerCheck, urllib3.connection.HTTPConnection), extra)
        https_conn = type("QasrHTTPSConnection", (PeerCheck, urllib3.connection.HTTPSConnection), extra)
        manager.pool_classes_by_scheme = {
            "http": type("QasrHTTPConnectionPool", (urllib3.HTTPConnectionPool,), {"ConnectionCls": http_conn}),
            "https": type("QasrHTTPSConnectionPool", (urllib3.HTTPSConnectionPool,), {"ConnectionCls": https_conn}),
        }

    class QasrGuardedRequestsRH(RequestsRH):
        """yt-dlp's requests handler, with the guard before every hop and on every new direct connection."""

        RH_NAME = "qasr-guarded-requests"
        qasr_guard: _Guard

        def _create_instance(self, cookiejar, legacy_ssl_support=None):  # type: ignore[no-untyped-def]
            session = super()._create_instance(cookiejar=cookiejar, legacy_ssl_support=legacy_ssl_support)
            guard = self.qasr_guard
            send = session.send  # requests' redirect loop calls session.send for each hop

            def guarded_send(request, **kwargs):  # type: ignore[no-untyped-def]
                try:
                    guard.check_url(request.url)
                except FetchError as exc:
                    raise GuardRefused(str(exc)) from exc
                return send(request, **kwargs)

            session.send = guarded_send
            for adapter in {id(a): a for a in session.adapters.values()}.values():
                guard_pool_manager(adapter.poolmanager, guard)
            return session

    class QasrDataUrlRH(UrllibRH):
        """`data:` URLs (some extractors use them for manifests); no network involved."""

        RH_NAME = "qasr-data-urls"
        _SUPPORTED_URL_SCHEMES = ("data",)

    class GuardedYoutubeDL(yt_dlp.YoutubeDL):
        def __init__(self, params: dict, guard: _Guard) -> None:
            self._qasr_guard = guard
            super().__init__(params)

        @functools.cached_property
        def _request_director(self):  # type: ignore[no-untyped-def, override]
            director = self.build_request_director([QasrGuardedRequestsRH, QasrDataUrlRH])
            for handler in director.handlers.values():
                handler.qasr_guard = self._qasr_guard
            return director

    return GuardedYoutubeDL


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
    """Raised from the progress hook when a download passes the size limit or the deadline."""


def _download(url: str, settings: Settings, guard: _Guard, tmpdir: str) -> FetchedAudio:
    """Extract, check, download and decode; every failure leaves as a `FetchError`."""
    from yt_dlp.utils import DownloadError, YoutubeDLError

    max_bytes = int(settings.max_upload_mb * 1024 * 1024)
    log = _Log()
    started = [0.0]
    hook_stop: list[FetchError] = []

    def progress(status: dict) -> None:
        done = status.get("downloaded_bytes") or 0
        total = status.get("total_bytes") or 0
        if max(done, total) > max_bytes:
            hook_stop.append(_too_large(settings, None))
            raise _StopDownload()
        if started[0] and time.monotonic() - started[0] > DOWNLOAD_DEADLINE_SECONDS:
            hook_stop.append(FetchError(
                f"The download took longer than {DOWNLOAD_DEADLINE_SECONDS / 60:.0f} min and was stopped "
                "(the server is too slow); try again later or upload the file."))
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
        # Never let ffmpeg fetch a URL (it would bypass the guard): native downloaders only, ffmpeg disabled.
        "external_downloader": {"default": "native"},
        "hls_prefer_native": True,
        "ffmpeg_location": os.path.join(tmpdir, "ffmpeg-disabled"),
        "fixup": "never",
        "updatetime": False,
        "check_formats": False,
    }
    if settings.ytdlp_cookies:
        params["cookiefile"] = _private_cookies(settings.ytdlp_cookies, tmpdir)

    try:
        ydl_class = _guarded_ydl_class()
    except ImportError as exc:  # requests/urllib3 missing: the guarded handler cannot exist, so nothing is fetched
        err = FetchError(f"URL input is not available on this server ({exc}); install 'yt-dlp[default]'.")
        err.status_code = 503
        raise err from exc
    try:
        with ydl_class(params, guard) as ydl:
            info = ydl.extract_info(url, download=False)
            entry = _first_entry(info, settings, log)
            _check_info(entry, settings, guard)
            started[0] = time.monotonic()
            done = ydl.process_ie_result(entry, download=True)
    except _StopDownload:
        raise hook_stop[0] from None
    except FetchError:
        raise
    except Exception as exc:  # yt-dlp's DownloadError and whatever else escapes it: never a traceback
        if hook_stop:
            raise hook_stop[0] from None
        if guard.refusal is not None:
            raise guard.refusal from None
        if not isinstance(exc, (DownloadError, YoutubeDLError, OSError)):
            _logger.debug("unexpected error from yt-dlp for %s", url, exc_info=True)
        raise _explain(exc, url, settings, log) from None

    if guard.refusal is not None:  # e.g. one HLS fragment refused and skipped: refuse the whole thing
        raise guard.refusal
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
                "player challenges; the operator should install 'yt-dlp[default,deno]'."
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



def _short(text: str, limit: int = 80) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
