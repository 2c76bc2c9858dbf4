"""The docs the code cites: every `docs/facts.md, "Section"` in a docstring or comment names a section there."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_cited_section_of_docs_facts_exists():
    headings = set(re.findall(r"^## (.+)$", (REPO / "docs" / "facts.md").read_text(), re.M))
    cited = {
        (path.relative_to(REPO).as_posix(), section)
        for folder in ("dismi", "stages")
        for path in sorted((REPO / folder).rglob("*.py"))
        for section in re.findall(r'docs/facts\.md, "([^"]+)"', path.read_text())
    }
    assert {c[0].split("/")[0] for c in cited} == {"dismi", "stages"}, "the scan no longer reaches both folders"
    assert {c for c in cited if c[1] not in headings} == set(), f"sections of docs/facts.md: {sorted(headings)}"


def test_every_named_run_in_the_docs_can_be_run_twice():
    """DVC refuses a second `dvc exp run -n NAME` ("Experiment conflicts with existing experiment"): every
    code block that names runs removes that name first (`dvc exp remove -q NAME`, silent when absent)."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    offending = []
    for page in pages:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S):
            if re.search(r"dvc exp run[^\n]*\s-n\s", block) and "dvc exp remove -q" not in block:
                offending.append(f"{page.name}: {block.splitlines()[0]}")
    assert offending == []
