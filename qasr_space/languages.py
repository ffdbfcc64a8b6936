"""The languages Qwen3-ASR knows and the subset the ForcedAligner covers, read from transformers' processor tables."""

from __future__ import annotations

from transformers.models.qwen3_asr.processing_qwen3_asr import FORCED_ALIGNER_LANGUAGES, LANGUAGE_CODE_TO_NAME

from .errors import LanguageError, shown

#: Display names of the 30 ASR languages, sorted.
LANGUAGES: tuple[str, ...] = tuple(sorted(LANGUAGE_CODE_TO_NAME.values()))
#: Display names of the 11 languages the ForcedAligner gives timestamps for, sorted.
ALIGNER_LANGUAGES: tuple[str, ...] = tuple(sorted(FORCED_ALIGNER_LANGUAGES))
NAME_TO_CODE: dict[str, str] = {name: code for code, name in LANGUAGE_CODE_TO_NAME.items()}

_LOOKUP = {**{code.lower(): name for code, name in LANGUAGE_CODE_TO_NAME.items()},
           **{name.lower(): name for name in LANGUAGE_CODE_TO_NAME.values()}}


def normalize_language(language: str | None) -> str | None:
    """Map a name or code in any casing ("en", "ENGLISH", "English") to its display name; None/"auto" → None."""
    if language is None:
        return None
    key = language.strip().lower()
    if key in ("", "auto", "none"):
        return None
    name = _LOOKUP.get(key)
    if name is None:
        raise LanguageError(
            f"Unknown language {shown(language)}. Use one of the 30 names or codes, e.g. 'English' or 'en', "
            f"or 'auto' to detect it: {', '.join(LANGUAGES)}."
        )
    return name


def detected_language(raw: str | None) -> str | None:
    """The model's own language tag ("ENGLISH", "english") as a display name; unknown tags are kept title-cased."""
    if not raw:
        return None
    return _LOOKUP.get(raw.strip().lower(), raw.strip().title())


def aligner_supports(language: str | None) -> bool:
    """Whether the ForcedAligner gives timestamps for this display name."""
    return language in FORCED_ALIGNER_LANGUAGES
