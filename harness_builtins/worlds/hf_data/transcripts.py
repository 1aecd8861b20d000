"""Anthropic HH transcripts: ``"\\n\\nHuman: … \\n\\nAssistant: … \\n\\nHuman: … \\n\\nAssistant: …"``.

In HH-style data a chosen/rejected column holds the whole dialogue; the two share everything
up to the final ``Assistant:`` and differ in the last reply. :func:`split_transcript` cuts a
transcript there. The prompt text keeps the earlier turns but drops the leading ``Human:``, so
the default chat template ``"Human: {prompt}\\n\\nAssistant:"`` rebuilds the transcript's
prefix exactly; :func:`turns` turns it into chat messages for a tokenizer's chat template.
"""
from __future__ import annotations

import re

HUMAN, ASSISTANT = "\n\nHuman:", "\n\nAssistant:"
_TURN = re.compile(r"\n\n(Human|Assistant):[ \t]?")
_ROLE = {"Human": "user", "Assistant": "assistant"}


class TranscriptError(ValueError):
    """A transcript without the expected ``Human:``/``Assistant:`` markers."""


def _normalized(text: str) -> str:
    """HH transcripts start with ``\\n\\nHuman:``; accept them without the leading blank line too."""
    return "\n\n" + text if text.startswith(("Human:", "Assistant:")) else text


def split_transcript(text: str, *, require_reply: bool = True) -> tuple[str, str]:
    """(prompt, final assistant reply): the prompt is every turn before the final ``Assistant:``.

    ``require_reply=False`` (prompt-only sources) accepts a transcript with no ``Assistant:``
    at all: then the whole text is the prompt and the reply is empty.
    """
    text = _normalized(text)
    cut = text.rfind(ASSISTANT)
    if cut < 0:
        if require_reply:
            raise TranscriptError(f"no '{ASSISTANT.strip()}' turn in transcript {text[:80]!r}")
        cut = len(text)
    prefix = text[:cut]
    if not prefix.startswith(HUMAN):
        raise TranscriptError(f"transcript does not start with '{HUMAN.strip()}': {text[:80]!r}")
    return prefix[len(HUMAN):].strip(), text[cut + len(ASSISTANT):].strip()


def shared_prompt(transcripts: list[str]) -> tuple[str, list[str]] | None:
    """(prompt, replies) of transcripts that continue one dialogue; None when their prompts differ."""
    parts = [split_transcript(t) for t in transcripts]
    prompts = {p for p, _ in parts}
    return (parts[0][0], [r for _, r in parts]) if len(prompts) == 1 else None


def is_dialogue(prompt_text: str) -> bool:
    """True when a prompt holds earlier turns (it was cut from a multi-turn transcript)."""
    return _TURN.search(prompt_text) is not None


def turns(prompt_text: str) -> list[dict[str, str]]:
    """Chat messages of a prompt: the first turn is the user's, later ones follow their markers."""
    pieces = _TURN.split(prompt_text)
    messages = [{"role": "user", "content": pieces[0].strip()}]
    for name, content in zip(pieces[1::2], pieces[2::2]):
        messages.append({"role": _ROLE[name], "content": content.strip()})
    return messages
