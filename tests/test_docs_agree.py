"""README and docs quote figures from the study outputs under docs/: each quoted figure must be the one in
the file it comes from (a figure copied by hand and not updated, or updated in one place only, fails here)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "docs" / "studies" / "conditional-negatives" / "results.md"
BEFORE = REPO / "docs" / "reproduction" / "fixed-threads" / "results.md"
FACTORS = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")


def _table(text: str, first_header: str) -> list[dict[str, str]]:
    """The first Markdown table whose header starts with `first_header`, as rows of {column: cell}."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (c.strip() for c in line.strip("|").split("|")))))
    return rows


def _group_table(path: Path, group: str) -> dict[str, dict[str, str]]:
    """results.md's accuracy table of `group` (its section starts with `group`), by factor."""
    text = path.read_text()
    section = text[text.index(f"`{group}`: ") :]
    return {row["factor"]: row for row in _table(section, "factor")}


def _critics(path: Path, group: str) -> dict[str, str]:
    text = path.read_text()
    section = text[text.index(f"`{group}`: ") :]
    return {row["critic"]: row["loss"] for row in _table(section, "critic")}


def test_the_readme_table_is_the_profile_s_results_and_the_earlier_profile_s():
    readme = {row["factor"]: row for row in _table((REPO / "README.md").read_text(), "factor")}
    profile, before = _group_table(PROFILE, "kl0.01"), _group_table(BEFORE, "profile")
    for factor in (*FACTORS, "distance to ideal"):
        for column in ("S paper probe", "S wide probe", "E paper probe", "E wide probe"):
            assert readme[factor][column] == profile[factor][column], (factor, column)
        assert readme[factor]["E before (partner)"] == before[factor]["E paper probe"], factor
        for column in ("paper S", "paper E", "report S", "report E"):
            assert readme[factor][column] == profile[factor][column], (factor, column)
    critics = _critics(PROFILE, "kl0.01")
    assert readme["critics (Table IV / separable)"]["E paper probe"] == f"{critics['paper']} / {critics['separable']}"
    before_critics = _critics(BEFORE, "profile")
    assert (
        readme["critics (Table IV / separable)"]["E before (partner)"]
        == f"{before_critics['paper']} / {before_critics['separable']}"
    )


def test_the_findings_rows_are_their_results_files():
    findings = (REPO / "docs" / "findings.md").read_text()
    setting = "setting (what changed against the row above)"
    rows = _table(findings, setting)
    for path, group, start in (
        (BEFORE, "profile", "and a 16-dim E"),
        (PROFILE, "cond7", "conditional negatives"),
        (PROFILE, "kl0.01", "and the bottleneck, beta_kl_ex 0.01"),
    ):
        (row,) = [r for r in rows if r[setting].startswith(start)]
        table = _group_table(path, group)
        hues = " / ".join(table[f]["E paper probe"] for f in FACTORS[:3])
        shared = " / ".join(table[f]["E paper probe"] for f in FACTORS[3:])
        assert row["E floor / wall / object hue"] == hues, start
        assert row["E scale / shape / orientation"] == shared, start
        assert row["E distance to ideal"] == table["distance to ideal"]["E paper probe"], start
