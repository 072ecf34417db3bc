"""Every relative link in the project's Markdown (README.md, ARCHITECTURE.md, docs/, bench/README.md) names a file
that exists, and every `#anchor` names a heading of its page, as GitHub makes heading anchors; no line of the README
or of docs/ runs past 120 characters."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted(
    [ROOT / "README.md", ROOT / "ARCHITECTURE.md", ROOT / "bench" / "README.md", *(ROOT / "docs").glob("*.md")]
)

FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)[ \t]*#*[ \t]*$", re.M)
HTML_ID = re.compile(r"<[^>]+\b(?:id|name)=\"([^\"]+)\"")


def prose(text: str) -> str:
    """The text without code blocks and code spans, where brackets are not links."""
    return CODE_SPAN.sub(" ", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text (code spans' content, links' text), lower case, punctuation other
    than `-` and `_` dropped, spaces as `-`."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = page.read_text()
    seen: dict[str, int] = {}
    out = set(HTML_ID.findall(text))
    for heading in HEADING.findall(FENCE.sub("", text)):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def broken_links(page: Path) -> tuple[list[str], int]:
    """(the links of a page that lead nowhere, how many relative links it has)."""
    bad, count = [], 0
    for target in LINK.findall(prose(page.read_text())):
        if not target or re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
            continue
        count += 1
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target}: no {_shown(dest)}")
        elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest)):
            bad.append(f"{target}: no heading #{anchor} in {_shown(dest)}")
    return bad, count


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_anchors_resolve(page):
    bad, _ = broken_links(page)
    assert not bad, "\n".join(bad)


def test_the_readme_links_to_every_docs_page():
    readme = prose((ROOT / "README.md").read_text())
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in LINK.findall(readme) if t.startswith("docs/")}
    pages = {p.resolve() for p in (ROOT / "docs").glob("*.md")}
    assert pages and pages <= linked, sorted(str(p.relative_to(ROOT)) for p in pages - linked)


@pytest.mark.parametrize("page", [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))], ids=lambda p: p.name)
def test_no_line_over_120_characters(page):
    lines = enumerate(page.read_text().splitlines(), 1)
    long = [f"{page.name}:{n}: {len(line)} characters" for n, line in lines if len(line) > 120]
    assert not long, long


def test_the_checker_finds_what_is_broken(tmp_path):
    twice = "## A section: `make up-prod`, again\n\n"
    (tmp_path / "other.md").write_text("# Other page\n\n" + twice + twice)
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n"
        "[fine](other.md#a-section-make-up-prod-again) [second of the same](other.md#a-section-make-up-prod-again-1)\n"
        "[here](#page) [a web page](https://example.com/x) `[code](nowhere.md)`\n\n"
        "```\n[in a block](nowhere.md)\n```\n\n"
        "[missing file](nowhere.md) [missing anchor](other.md#nope) ![missing image](img/none.png)\n"
    )
    bad, count = broken_links(page)
    assert count == 6
    assert [b.split(":")[0] for b in bad] == ["nowhere.md", "other.md#nope", "img/none.png"]
    assert slug("Watching the closed loop: `make replay`") == "watching-the-closed-loop-make-replay"
    assert slug("Distributed training (`bench_training.py`)") == "distributed-training-bench_trainingpy"
