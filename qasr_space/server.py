"""Assembles the Space: one model manager, the Blocks UI, the queue, the file janitor and the launch settings."""

from __future__ import annotations

import logging
import os

import gradio as gr
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from gradio.utils import get_upload_folder
from starlette.middleware import Middleware

from .api import register_api, upload_limit_bytes
from .fetch import FETCH_ROOT
from .gate import CallGate
from .gpu import preload, zero_gpu_settings
from .models import ModelManager
from .rest import openai_router
from .retention import Janitor
from .settings import Settings
from .ui import ASSETS_DIR, EXAMPLES, PAGE_JS, build_demo

log = logging.getLogger(__name__)


def create_demo(settings: Settings | None = None, manager: ModelManager | None = None) -> gr.Blocks:
    """The whole app as a Blocks (the UI and the named API endpoints), ready to launch or to mount."""
    manager = manager or ModelManager(zero_gpu_settings(settings or Settings.from_env()))
    preload(manager)
    demo = build_demo(manager)
    with demo:
        register_api(manager)
    return demo


def start_janitor(settings: Settings) -> Janitor:
    """Delete user files (uploads, Gradio's copies, result folders, fetch leftovers) `QASR_KEEP_MINUTES` after they
    were written, within `QASR_MAX_DISK_MB`. Call once the demo is built: the example clips Gradio has copied into
    its upload folder by then are kept, since the page's example buttons play those copies."""
    upload_root = get_upload_folder()
    examples = cached_examples(upload_root)
    return Janitor(lambda: [upload_root, FETCH_ROOT], settings.keep_minutes * 60, settings.max_disk_mb * 1024 * 1024,
                   lambda: examples).start()


def cached_examples(upload_root: str) -> frozenset[str]:
    """Gradio's cached copies of the example clips: files in its upload folder with an example's name and size."""
    sizes = {name: (ASSETS_DIR / name).stat().st_size for name, *_ in EXAMPLES}
    found = set()
    for folder, _, names in os.walk(upload_root):
        for name in names:
            path = os.path.join(folder, name)
            if name in sizes and os.path.getsize(path) == sizes[name]:
                found.add(path)
    return frozenset(found)


#: The routes through which Gradio lets a program call an event by its name.
_CALL_ROUTES = ("/gradio_api/run/{}", "/gradio_api/api/{}", "/gradio_api/call/{}", "/gradio_api/call/v2/{}")


def close_page_events(app: FastAPI, demo: gr.Blocks) -> None:
    """Answer 404 on the by-name routes of the page's own events (every event not on the API page): Gradio hides
    private ones from the API page but still runs them when called by name, which would let a program skip the API
    token. The page calls them through the queue, as before."""
    async def not_an_endpoint(request: Request) -> JSONResponse:
        return JSONResponse({"detail": "Not Found"}, status_code=404)

    private = {fn.api_name for fn in demo.fns.values() if fn.api_visibility != "public" and fn.api_name}
    paths = [route.format(name) + slash for name in sorted(private) for route in _CALL_ROUTES for slash in ("", "/")]
    for path in paths:
        app.router.routes.insert(0, APIRoute(path, not_an_endpoint, methods=["POST"], include_in_schema=False))


def main() -> None:
    """Launch on GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (Gradio reads them itself), with the OpenAI-compatible
    route added to the FastAPI app that `launch` returns, then serve until interrupted."""
    manager = ModelManager(zero_gpu_settings(Settings.from_env()))
    # The engine now, not at the first request: a wrong QASR_ENGINE stops the app here, and a vLLM server that the app
    # supervises starts while the page loads.
    log.info("transcribing with the %s engine", manager.engine.name)
    demo = create_demo(manager=manager)
    start_janitor(manager.settings)
    demo.queue(default_concurrency_limit=manager.settings.concurrency_limit)
    app, _, _ = demo.launch(prevent_thread_lock=True, max_file_size=upload_limit_bytes(manager.settings),
                            allowed_paths=[str(ASSETS_DIR)], js=PAGE_JS,
                            app_kwargs={"middleware": [Middleware(CallGate, blocks=demo)]})
    app.include_router(openai_router(manager))
    close_page_events(app, demo)
    demo.block_thread()
