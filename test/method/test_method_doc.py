"""docs/method.md explains the repository: every § the code and tests cite names one of its headings.

The citations are read from the source text of decaf_ros/, test/ and bench/ (any file, any author), in the forms
used there: ``§7.3``, ranges ``§2.2-2.3`` / ``§7.2–§7.5`` / ``§2–§7`` (both ends are checked), and
``§13 item 11`` / ``§13 items 11–13`` (the numbered sub-sections 13.11 … 13.13).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

CITATION = re.compile(
    r"§\s*(?P<start>\d+(?:\.\d+)?)"
    r"(?:\s*[-–]\s*§?\s*(?P<end>\d+(?:\.\d+)?))?"
    r"(?:\s+items?\s+(?P<item>\d+)(?:\s*[-–]\s*(?P<item_end>\d+))?)?")
HEADING = re.compile(r"^#{1,6}\s+(\d+(?:\.\d+)*)\.?\s", re.MULTILINE)
SOURCE_SUFFIXES = {".py", ".md", ".txt", ".yaml", ".cfg", ".sh"}


def repository_root() -> Path:
    """The checkout this test file lives in (found upwards, so moving the test keeps it working)."""
    for folder in Path(__file__).resolve().parents:
        if (folder / "docs" / "method.md").is_file() and (folder / "decaf_ros").is_dir():
            return folder
    raise AssertionError("docs/method.md not found above the test file")


def headings(text: str) -> set[str]:
    return set(HEADING.findall(text))


def cited_sections(text: str) -> set[str]:
    """Section numbers a text cites (both ends of a range; §N item M as N.M)."""
    cited: set[str] = set()
    for match in CITATION.finditer(text):
        start, end = match["start"], match["end"]
        cited.add(start)
        if end:
            # "§2.2-3" means 2.2 to 2.3; "§2.2-2.3" and "§2–§7" name the end in full
            cited.add(f"{start.split('.')[0]}.{end}" if "." in start and "." not in end else end)
        for item in filter(None, (match["item"], match["item_end"])):
            cited.add(f"{start}.{item}")
    return cited


def citations_by_file(root: Path) -> dict[str, set[str]]:
    found = {}
    for top in ("decaf_ros", "test", "bench"):
        for path in sorted((root / top).rglob("*")):
            if path.is_file() and path.suffix in SOURCE_SUFFIXES and "__pycache__" not in path.parts:
                sections = cited_sections(path.read_text(encoding="utf-8", errors="replace"))
                if sections:
                    found[str(path.relative_to(root))] = sections
    return found


def test_the_parser_reads_every_citation_form():
    text = ("see §7.3, §2.2-2.3 and §7.2–§7.5, §2–§7, §13 item 11, §13 items 11–13, §4.3-4, § 9.1, "
            "§13.6, §5–§6 and (§14)")
    assert cited_sections(text) == {"7.3", "2.2", "2.3", "7.2", "7.5", "2", "7", "13", "13.11", "13.13", "4.3",
                                    "4.4", "9.1", "13.6", "5", "6", "14"}
    assert headings("# Title\n## 7. SAM2\n### 7.3 Stage 1\n#### 13.11 Backend\ntext ## 9.9 no\n") == {
        "7", "7.3", "13.11"}


def test_every_cited_section_has_a_heading_in_docs_method():
    root = repository_root()
    available = headings((root / "docs" / "method.md").read_text(encoding="utf-8"))
    by_file = citations_by_file(root)
    assert len(by_file) >= 10  # the code does cite the method: the scan found the citations
    unresolved = {f"{name}: §{s}" for name, sections in by_file.items() for s in sections if s not in available}
    assert not unresolved, "citations without a heading in docs/method.md:\n" + "\n".join(sorted(unresolved))


@pytest.mark.parametrize("section", ["3.7", "7.4", "8", "9.1", "13.11", "13.12"])
def test_the_sections_this_repository_depends_on_exist(section):
    root = repository_root()
    assert section in headings((root / "docs" / "method.md").read_text(encoding="utf-8"))


def test_headings_are_numbered_once():
    text = (repository_root() / "docs" / "method.md").read_text(encoding="utf-8")
    numbers = HEADING.findall(text)
    assert len(numbers) == len(set(numbers))
