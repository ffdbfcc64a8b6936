"""qasr-space: Qwen3-ASR transcription with word timestamps, as a library, a command line and a Gradio Space."""

from .errors import QasrError
from .models import ModelManager
from .results import Chunk, Segment, Transcript, Word
from .settings import Settings
from .transcribe import align, iter_transcribe, transcribe

__version__ = "0.1.0"

__all__ = ["Chunk", "ModelManager", "QasrError", "Segment", "Settings", "Transcript", "Word", "align",
           "iter_transcribe", "transcribe", "__version__"]
