"""Assembles the Space: one model manager, the Blocks UI, the queue, and the launch settings."""

from __future__ import annotations

import gradio as gr

from .models import ModelManager
from .settings import Settings
from .ui import build_demo


def create_demo(settings: Settings | None = None) -> gr.Blocks:
    """The whole app as a Blocks, ready to launch or to mount."""
    settings = settings or Settings.from_env()
    manager = ModelManager(settings)
    return build_demo(manager)


def main() -> None:
    """Launch on GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (Gradio reads them itself)."""
    create_demo().launch()
