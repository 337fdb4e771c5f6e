"""Instructions from runbook Markdown: list items and imperative sentences of a
section, cleaned of links, emphasis and code fences, for the planner to turn into steps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FENCE = re.compile(r"^\s*(```|~~~)")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(.*)$")
_LINK = re.compile(r"!?\[([^\]]*)\](?:\([^)]*\)|\[[^\]]*\])")
_LINK_DEF = re.compile(r"^\s*\[[^\]]+\]:\s*\S+")
_EMPHASIS = re.compile(r"(\*\*|__|(?<!\w)[*_](?=\S)|(?<=\S)[*_](?!\w))")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z`])")


def clean_text(text: str) -> str:
    text = _LINK.sub(r"\1", text)
    text = _EMPHASIS.sub("", text)
    return " ".join(text.split())


def cut_text(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:") + "…"


@dataclass(slots=True)
class Instruction:
    text: str
    command: str | None = None


def instructions(markdown: str) -> list[Instruction]:
    """Pull the instructions out of one runbook section.

    List items (``-``, ``*``, ``1.``), with their indented continuation lines, are
    instructions. A section without list items yields one instruction per prose
    paragraph (its first two sentences). The first line of a code block that
    follows an instruction is attached to it as its command.

    Args:
        markdown: the section body.

    Returns:
        Instructions in document order, Markdown links and emphasis removed.
    """
    items: list[Instruction] = []
    paragraphs: list[Instruction] = []
    current_item: list[str] | None = None
    current_par: list[str] = []
    in_fence = False
    fence_first: str | None = None
    last: Instruction | None = None

    def close_item() -> None:
        nonlocal current_item, last
        if current_item:
            last = Instruction(clean_text(" ".join(current_item)))
            items.append(last)
        current_item = None

    def close_par() -> None:
        nonlocal current_par, last
        if current_par:
            text = clean_text(" ".join(current_par))
            sentences = _SENTENCE_END.split(text)
            last = Instruction(" ".join(sentences[:2]))
            paragraphs.append(last)
        current_par = []

    for line in markdown.splitlines():
        if _FENCE.match(line):
            if in_fence:
                if last is not None and last.command is None and fence_first:
                    last.command = fence_first
                fence_first = None
            else:
                close_item()
                close_par()
            in_fence = not in_fence
            continue
        if in_fence:
            stripped = line.strip().removeprefix("$ ").strip()
            if fence_first is None and stripped and not stripped.startswith("#"):
                fence_first = stripped
            continue
        if _LINK_DEF.match(line):
            continue
        match = _LIST_ITEM.match(line)
        if match:
            close_item()
            close_par()
            current_item = [match.group(1)]
        elif not line.strip():
            close_item()
            close_par()
        elif current_item is not None:
            current_item.append(line.strip())
        elif line.lstrip().startswith(("|", ">", "<")):
            continue  # tables, quotes and HTML are not instructions
        else:
            close_item()
            current_par.append(line.strip())
    close_item()
    close_par()
    chosen = items or paragraphs
    return [
        i
        for i in chosen
        if len(i.text) >= 12
        and any(c.isalpha() for c in i.text)
        and not (i.text.endswith(":") and i.command is None)  # a lead-in to a sub-list
    ]


def describe_instruction(ins: Instruction, limit: int) -> str:
    text = ins.text.rstrip(":")
    if ins.command:
        command = cut_text(ins.command, 100)
        text = f"{cut_text(text, limit - len(command) - 5)}: `{command}`"
    return cut_text(text, limit)


