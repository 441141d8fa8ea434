"""Reading completions: plain strings or TRL conversational message lists."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

Completion = str | Sequence[Mapping[str, Any]]


def completion_text(completion: Completion) -> str:
    """The text of one completion.

    A plain string is returned as is; a TRL conversational completion (a list of
    ``{"role": ..., "content": ...}`` messages) gives the contents of its assistant messages joined
    by newlines (all messages when none is marked ``assistant``).
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence):
        messages = [m for m in completion if isinstance(m, Mapping)]
        assistant = [m for m in messages if m.get("role") == "assistant"] or messages
        return "\n".join(_content_text(m.get("content", "")) for m in assistant)
    raise TypeError(f"expected a completion string or a list of chat messages, got {type(completion).__name__}")


def _content_text(content: Any) -> str:
    """Message content may be a string or a list of typed parts (``{"type": "text", "text": ...}``)."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "".join(p.get("text", "") for p in content if isinstance(p, Mapping))
    return str(content)


def extract_tag(text: str, tag: str) -> str | None:
    """Content of the last ``<tag>...</tag>`` in ``text``, stripped; None when there is none."""
    matches = re.findall(rf"<{re.escape(tag)}>(.*?)</{re.escape(tag)}>", text, flags=re.S)
    return matches[-1].strip() if matches else None
