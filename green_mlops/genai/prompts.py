"""Prompts for the load generator, read from JSONL: a user's own traffic or a Chatbot-Arena-style export.

Each line is one JSON object. Accepted shapes, first match wins: ``{"messages": [...]}`` (OpenAI chat),
``{"conversation": [...]}`` / ``{"conversation_a": [...]}`` (Chatbot Arena: the first user turn is
kept, as the paper replays user queries), ``{"turns": ["..."]}`` (MT-Bench: the first turn), or a
plain ``{"prompt" | "text" | "question" | "instruction": "..."}``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

TEXT_KEYS = ("prompt", "text", "question", "instruction")
CONVERSATION_KEYS = ("conversation", "conversation_a")
ACCEPTED = "'messages', 'conversation', 'conversation_a', 'turns', " + ", ".join(repr(k) for k in TEXT_KEYS)


class PromptError(ValueError):
    """A prompt file the generator cannot use; the message names the line and the fix."""


@dataclass(frozen=True)
class Prompt:
    """One request's input as chat messages; ``text`` is what a completions endpoint gets."""

    messages: tuple[tuple[str, str], ...]

    @property
    def text(self) -> str:
        return self.messages[-1][1]

    def as_messages(self) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in self.messages]


@dataclass(frozen=True)
class PromptSet:
    """The prompts of one file, with what identifies it in a run's parameters."""

    prompts: tuple[Prompt, ...]
    source: str
    sha256: str

    def __len__(self) -> int:
        return len(self.prompts)


def default_prompts_path() -> Path:
    """The small prompt set shipped with green_mlops: varied everyday questions written for this project."""
    return Path(str(resources.files("green_mlops.genai").joinpath("prompts.jsonl")))


def load_prompts(path: str | Path | None = None) -> PromptSet:
    """Read a JSONL prompt file (the shipped default when ``path`` is None); raise PromptError on bad input."""
    p = default_prompts_path() if path is None else Path(path)
    if not p.is_file():
        raise PromptError(f"prompt file {str(p)!r} does not exist; give a JSONL file with one "
                          f'{{"prompt": "..."}} per line, or leave out --prompts for the default set')
    raw = p.read_bytes()
    prompts = []
    for number, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PromptError(f"{p}:{number}: not valid JSON ({exc.msg}); each line must be one JSON object "
                              "(a JSON array file must be converted to JSONL first)") from None
        prompts.append(_prompt(record, f"{p}:{number}"))
    if not prompts:
        raise PromptError(f"prompt file {str(p)!r} holds no prompts; add lines like "
                          '{"prompt": "What is the difference between OpenCL and CUDA?"}')
    return PromptSet(tuple(prompts), str(p), hashlib.sha256(raw).hexdigest())


def _prompt(record: object, where: str) -> Prompt:
    if not isinstance(record, dict):
        raise PromptError(f"{where}: expected a JSON object with one of {ACCEPTED}; got {type(record).__name__}")
    if "messages" in record:
        return Prompt(_messages(record["messages"], where, first_user_only=False))
    for key in CONVERSATION_KEYS:
        if key in record:
            return Prompt(_messages(record[key], where, first_user_only=True))
    if "turns" in record:
        turns = record["turns"]
        if isinstance(turns, list) and turns and isinstance(turns[0], str) and turns[0].strip():
            return Prompt((("user", turns[0]),))
        raise PromptError(f"{where}: 'turns' must be a non-empty list of strings")
    for key in TEXT_KEYS:
        if key in record:
            text = record[key]
            if isinstance(text, str) and text.strip():
                return Prompt((("user", text),))
            raise PromptError(f"{where}: {key!r} must be a non-empty string")
    raise PromptError(f"{where}: no prompt found; each line needs one of {ACCEPTED}")


def _messages(value: object, where: str, *, first_user_only: bool) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list) or not value:
        raise PromptError(f"{where}: messages must be a non-empty list of {{'role': ..., 'content': ...}}")
    out: list[tuple[str, str]] = []
    for m in value:
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise PromptError(f"{where}: each message needs a 'role' and a string 'content'")
        role = str(m.get("role", "user"))
        role = "user" if role == "human" else role
        if first_user_only and role == "user":
            return (("user", m["content"]),)
        out.append((role, m["content"]))
    while out and out[-1][0] == "assistant":
        out.pop()
    if first_user_only or not out or not out[-1][1].strip():
        raise PromptError(f"{where}: no user message to send (the conversation must contain a user turn)")
    return tuple(out)
