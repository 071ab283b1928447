"""Every relative link in the project's Markdown points at a file that exists, and every
``#anchor`` at a heading of that file, as GitHub slugs headings (a reader following
``decision.md#purchase-orders-two--and-three-way-match`` lands on the section)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "deploy" / "helm" / "README.md",
        ROOT / "bench" / "outside" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")


def slugs(markdown: str) -> set[str]:
    """GitHub's anchors for a document's headings: lower case, punctuation dropped (letters,
    digits, '_', '-' and spaces kept), spaces as hyphens, a repeated one suffixed -1, -2."""
    seen: dict[str, int] = {}
    out = set()
    fenced = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        match = None if fenced else _HEADING.match(line)
        if match is None:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        out.add(slug if count == 0 else f"{slug}-{count}")
    return out


def test_the_slugs_are_githubs() -> None:
    assert slugs("## Purchase orders: two- and three-way match\n## `fairness`: who\n## A\n## A") \
        == {"purchase-orders-two--and-three-way-match", "fairness-who", "a", "a-1"}


def test_every_relative_link_and_anchor_resolves() -> None:
    broken = []
    for doc in DOCS:
        for link in _LINK.findall(doc.read_text()):
            if link.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = link.partition("#")
            target = (doc.parent / path) if path else doc
            if not target.exists():
                broken.append(f"{doc.relative_to(ROOT)}: {link} (no such file)")
            elif anchor and target.suffix == ".md" and anchor not in slugs(target.read_text()):
                broken.append(f"{doc.relative_to(ROOT)}: {link} (no such heading)")
    assert not broken, "\n".join(broken)
