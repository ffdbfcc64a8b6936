"""Real-browser test helpers: a `python app.py` server on 127.0.0.1 and Debian's headless Chromium via Playwright.

`app_server` starts the app exactly as a Space does, on a free port, with the test checkpoints behind
`QASR_MODEL_DIR` (and in the vLLM pass their servers behind `QASR_VLLM_URL`: `tests.engines.suite_env`), and yields its base URL once the page answers. `launch_chromium` opens the system Chromium
(Playwright's own browsers are never installed). Both take extras, e.g. a fake microphone:
`launch_chromium(p, extra_args=["--use-fake-device-for-media-stream", ...])`. `static_server` serves a folder on
127.0.0.1 for URL inputs, silently. `upload` and `wait_for_result` drive the page: a file in, a result out;
`record_queue_messages` keeps what the server streamed to a page, for a failing test to show.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.engines import VLLM, suite_env

REPO = Path(__file__).resolve().parent.parent
#: Screenshots, server logs and evidence; the vLLM pass, which may run beside the other, keeps its own.
ARTIFACTS = REPO / "artifacts" / ("vllm" if VLLM else "")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--autoplay-policy=no-user-gesture-required"]
STARTUP_SECONDS = 180.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def app_server(model_dir: str, *, env: dict[str, str] | None = None, log_path: Path | None = None) -> Iterator[str]:
    """`python app.py` on a free port of 127.0.0.1; yields `http://127.0.0.1:PORT/` once it serves the page.

    The server's output goes to `log_path` (default `artifacts/app-server.log`, overwritten by the next server), which
    a failing start quotes.
    """
    port = free_port()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = log_path or ARTIFACTS / "app-server.log"
    full_env = {
        **os.environ,
        **suite_env(model_dir),
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        **(env or {}),
    }
    url = f"http://127.0.0.1:{port}/"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=full_env, stdout=log,
                                   stderr=subprocess.STDOUT)
        try:
            _wait_until_serving(url, process, log_path)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_serving(url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app.py exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url + "config", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"app.py did not serve {url} within {STARTUP_SECONDS:.0f} s:\n{log_path.read_text()[-4000:]}")


def launch_chromium(playwright, *, extra_args: Sequence[str] = ()):
    """Headless system Chromium that may autoplay (tests mute the player themselves)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=[*CHROMIUM_ARGS, *extra_args])


#: Keeps every message of the page's queue streams (`/queue/data`) in `window.__queueMessages`, stamped with the
#: page's clock, so a test that fails can tell what the server sent from what the page drew.
_RECORD_QUEUE_MESSAGES = """
window.__queueMessages = [];
const pageFetch = window.fetch;
window.fetch = async (...args) => {
  const response = await pageFetch(...args);
  if (String(args[0]?.url ?? args[0]).includes("/queue/data")) {
    const reader = response.clone().body.getReader();
    const decoder = new TextDecoder();
    (async () => {
      for (let part = await reader.read(); !part.done; part = await reader.read()) {
        window.__queueMessages.push(`${performance.now().toFixed(0)} ms ${decoder.decode(part.value)}`);
      }
    })();
  }
  return response;
};
"""


def record_queue_messages(page) -> None:
    """From the next navigation on, keep what the server streams to `page` (`keep_evidence` saves it)."""
    page.add_init_script(_RECORD_QUEUE_MESSAGES)


def keep_evidence(page, name: str, note: str = "") -> None:
    """For a test about to fail: `artifacts/NAME.png` (the whole page) and `artifacts/NAME.txt` (`note`, then what
    the server streamed to the page, if `record_queue_messages` was called on it)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    streamed = "".join(page.evaluate("window.__queueMessages ?? []"))
    (ARTIFACTS / f"{name}.txt").write_text(f"{note}\n\n{streamed}" if note else streamed)


#: How long a test waits for a transcription's result on the page.
RESULT_TIMEOUT_MS = 90_000
#: How long a test waits for the page itself: on 2 cores running both passes of the suite, a fresh server's first
#: page has taken over 30 s (Playwright's default).
PAGE_TIMEOUT_MS = 90_000


def upload(page, path: Path) -> None:
    """Put `path` in the page's file input and wait until the page lists it."""
    page.set_input_files("#qasr-file input[type=file]", str(path))
    page.wait_for_selector(f"#qasr-file td.filename[aria-label='{path.name}']")


def wait_for_result(page) -> None:
    """Wait until the page shows a result: karaoke words and the four downloads."""
    page.wait_for_function("document.querySelectorAll('#qasr-karaoke .qk-word').length > 0 && "
                           "document.querySelectorAll('#qasr-files a').length >= 4", timeout=RESULT_TIMEOUT_MS)


@contextlib.contextmanager
def module_server(model_dir: str, tmp_path_factory, name: str) -> Iterator[str]:
    """One app server for a test module, with Gradio's files in a folder of its own and its log in artifacts/."""
    env = {"GRADIO_TEMP_DIR": str(tmp_path_factory.mktemp(f"gradio-{name}"))}
    with app_server(model_dir, env=env, log_path=ARTIFACTS / f"app-server-{name}.log") as url:
        yield url


@contextlib.contextmanager
def chromium() -> Iterator:
    """Headless Chromium for a test module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


def open_section(page, elem_id: str) -> None:
    """Open a folded section of the page (an accordion, whose contents exist only while it is open)."""
    header = page.locator(f"#{elem_id} > button.label-wrap")
    if "open" not in (header.get_attribute("class") or ""):
        header.click()


def transcript_text(page) -> str:
    """The editable plain transcript, in the folded "Fix the transcript" section (once it has its text: the box is
    drawn when the section opens, and filled a moment later)."""
    open_section(page, "qasr-edit")
    page.wait_for_function("(document.querySelector('#qasr-text textarea') || {}).value", timeout=10_000)
    return page.input_value("#qasr-text textarea")


def choose_source(page, name: str) -> None:
    """Pick where the audio comes from: Upload, Record, URL or Live."""
    page.locator("#qasr-source").get_by_text(name, exact=True).click()


@contextlib.contextmanager
def static_server(directory: str | os.PathLike[str]) -> Iterator[str]:
    """Serve `directory` over HTTP on 127.0.0.1 (for URL inputs); yields the base URL, e.g. `http://127.0.0.1:PORT/`."""
    handler = functools.partial(_QuietHandler, directory=os.fspath(directory))
    server = _QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args) -> None:  # noqa: A002 (the base class's name)
        pass


class _QuietServer(ThreadingHTTPServer):
    """Says nothing on stderr when a client hangs up mid-download (the app does, on an oversized file)."""

    def handle_error(self, request, client_address) -> None:
        pass
