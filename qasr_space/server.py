"""Assembles the Space: one model manager, the Blocks UI, the queue, and the launch settings."""

from __future__ import annotations

import gradio as gr

from .api import register_api, upload_limit_bytes
from .gpu import preload, zero_gpu_settings
from .models import ModelManager
from .rest import openai_router
from .settings import Settings
from .ui import ASSETS_DIR, build_demo


def create_demo(settings: Settings | None = None, manager: ModelManager | None = None) -> gr.Blocks:
    """The whole app as a Blocks (the UI and the named API endpoints), ready to launch or to mount."""
    manager = manager or ModelManager(zero_gpu_settings(settings or Settings.from_env()))
    preload(manager)
    demo = build_demo(manager)
    with demo:
        register_api(manager)
    return demo


def main() -> None:
    """Launch on GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (Gradio reads them itself), with the OpenAI-compatible
    route added to the FastAPI app that `launch` returns, then serve until interrupted."""
    manager = ModelManager(zero_gpu_settings(Settings.from_env()))
    demo = create_demo(manager=manager)
    demo.queue(default_concurrency_limit=manager.settings.concurrency_limit)
    app, _, _ = demo.launch(prevent_thread_lock=True, max_file_size=upload_limit_bytes(manager.settings),
                            allowed_paths=[str(ASSETS_DIR)])
    app.include_router(openai_router(manager))
    demo.block_thread()
