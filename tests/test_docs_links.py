"""Every document the README, docs/*.md and collector-config/README.md link to or cite exists in the repository.

Checked: relative Markdown links (and their ``#anchors`` into Markdown files), and cited repository paths
(``examples/demo.py``, ``bench/RESULTS.md``, ``WIRE.md``: a path in backticks whose first part is a
top-level entry of the repository, or any ``*.md`` file named in the text).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "collector-config" / "README.md"]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
MARKDOWN_NAME = re.compile(r"(?<![\w/.-])([\w./-]+\.md)\b")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
# Paths that name what a command creates or a reader's own files, not documents of this repository.
NOT_CITATIONS = {".venv/", "bench/.", ".cache/", "dist/", "build/"}  # bench/.<name>-venv: the benchmarks' venvs


def anchors(markdown: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings (lower case, punctuation dropped, spaces to dashes)."""
    found = set()
    for heading in re.findall(r"^#+\s+(.*)$", FENCE.sub("", markdown.read_text()), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def links(document: Path) -> list[str]:
    """The relative link targets of ``document`` (outside code blocks)."""
    text = FENCE.sub("", document.read_text())
    return [target for target in LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", target)]


def cited_paths(document: Path) -> list[str]:
    """Repository paths ``document`` cites in code spans, and Markdown files it names anywhere."""
    text = document.read_text()
    prose = FENCE.sub("", text)
    top_level = {entry.name for entry in ROOT.iterdir() if not entry.name.startswith(".")}
    cited = []
    for span in CODE_SPAN.findall(prose):
        for word in span.split():
            word = word.strip(",;:()'\"")
            first = word.split("/", 1)[0]
            if "/" in word and first in top_level and "*" not in word and "<" not in word and "{" not in word:
                cited.append(word.split("#", 1)[0].split(":", 1)[0])
    cited += MARKDOWN_NAME.findall(re.sub(r"\]\([^)]*\)", "]", re.sub(r"https?://\S+", "", prose)))
    return [path for path in cited if not any(path.startswith(skip) for skip in NOT_CITATIONS)]


def resolve(document: Path, target: str) -> Path:
    """``target`` relative to ``document``'s folder, else (a repository path cited from a subfolder) to the root."""
    beside = (document.parent / target).resolve()
    return beside if beside.exists() else (ROOT / target).resolve()


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_relative_links_exist(document: Path) -> None:
    missing = []
    for target in links(document):
        path_part, _, anchor = target.partition("#")
        path = resolve(document, path_part) if path_part else document
        if not path.exists():
            missing.append(target)
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            missing.append(f"{target} (no such heading)")
    assert missing == []


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_cited_files_exist(document: Path) -> None:
    missing = sorted({path for path in cited_paths(document) if not resolve(document, path).exists()})
    assert missing == []


def test_the_checks_see_a_missing_document(tmp_path: Path) -> None:
    """The checks themselves: a link to, and a citation of, files that do not exist are both reported."""
    document = tmp_path / "doc.md"
    document.write_text("See [the wire](nowhere.md), `examples/no_such_demo.py`, WIRE.md and [ok](doc.md#title).\n"
                        "# Title\n")
    assert links(document) == ["nowhere.md", "doc.md#title"]
    assert not resolve(document, "nowhere.md").exists() and "title" in anchors(document)
    assert sorted(cited_paths(document)) == ["WIRE.md", "examples/no_such_demo.py"]
    assert not resolve(document, "WIRE.md").exists() and resolve(document, "examples/demo.py").exists()
