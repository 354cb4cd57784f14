"""Rendered blocks inside a Markdown page, between a start and an end marker: written in place, and kept
when the rest of the page is regenerated (docs/results.md holds several, each owned by one renderer)."""

from __future__ import annotations

from pathlib import Path


def carry_block(old: str, new: str, start: str, end: str) -> str:
    """``new`` page text with the block of ``old`` kept (appended when ``new`` has none)."""
    if start not in old or end not in old:
        return new
    block = old[old.index(start): old.index(end) + len(end)]
    if start in new and end in new:
        return new[:new.index(start)] + block + new[new.index(end) + len(end):]
    return new.rstrip("\n") + "\n\n" + block + "\n"


def write_block(page: Path, block: str, start: str, end: str) -> None:
    """Replace the page's block with ``block`` (or append it), written atomically."""
    from ..runs import atomic_path

    text = page.read_text() if page.is_file() else ""
    if start in text and end in text:
        text = text[:text.index(start)] + block.rstrip("\n") + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + block
    with atomic_path(page) as tmp:
        tmp.write_text(text if text.endswith("\n") else text + "\n")
