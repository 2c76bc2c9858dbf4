"""The docs the code cites: every `docs/facts.md, "Section"` in a docstring or comment names a section there."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_cited_section_of_docs_facts_exists():
    headings = set(re.findall(r"^## (.+)$", (REPO / "docs" / "facts.md").read_text(), re.M))
    cited = {(path.relative_to(REPO).as_posix(), section)
             for folder in ("dismi", "stages") for path in sorted((REPO / folder).glob("*.py"))
             for section in re.findall(r'docs/facts\.md, "([^"]+)"', path.read_text())}
    assert cited, "no docstring cites docs/facts.md"
    assert {c for c in cited if c[1] not in headings} == set(), f"sections of docs/facts.md: {sorted(headings)}"
