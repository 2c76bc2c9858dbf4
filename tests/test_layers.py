"""dismi's folders are its layers, and imports only go down: stages, then eval and train, then model and
synthetic, then data, then util. A module may import its own folder's modules and any lower layer's;
an import that goes up, sideways (eval <-> train, model <-> synthetic) or round in a circle fails here."""

from pathlib import Path

import pytest

from dismi.util import sources

REPO = Path(__file__).resolve().parents[1]
RANK = {"util": 0, "data": 1, "model": 2, "synthetic": 2, "train": 3, "eval": 3}


def _layer(module: Path) -> str:
    """dismi/<layer>/<name>.py -> layer."""
    return module.relative_to(REPO / "dismi").parts[0]


def _modules() -> list[Path]:
    return sorted(p for p in (REPO / "dismi").rglob("*.py") if p.name != "__init__.py")


def violations(graph: dict[Path, set[Path]]) -> list[str]:
    """Each import of `graph` (module -> modules it imports) that does not go down or stay in its folder."""
    bad = []
    for module, imported in graph.items():
        for target in imported:
            a, b = _layer(module), _layer(target)
            if a != b and RANK[b] >= RANK[a]:
                bad.append(f"{module.relative_to(REPO)} imports {target.relative_to(REPO)} ({a} -> {b})")
    return sorted(bad)


def cycles(graph: dict[Path, set[Path]]) -> list[list[Path]]:
    """The import cycles of `graph`, each as the path that closes it (depth-first search)."""
    found, state = [], {}

    def visit(m, path):
        state[m] = "open"
        for t in sorted(graph.get(m, ())):
            if state.get(t) == "open":
                found.append(path[path.index(t) :] + [t])
            elif t not in state:
                visit(t, path + [t])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return found


def _graph() -> dict[Path, set[Path]]:
    return {m: sources.imports(m, REPO, ("dismi",)) for m in _modules()}


def test_every_module_lives_in_a_layer_folder():
    loose = [p.name for p in (REPO / "dismi").glob("*.py") if p.name != "__init__.py"]
    assert not loose, f"{loose} sit beside the layers: move each into dismi/<layer>/"
    assert {_layer(m) for m in _modules()} == set(RANK)


def test_imports_only_go_down():
    assert violations(_graph()) == []


def test_no_import_cycles():
    assert cycles(_graph()) == []


def test_dismi_imports_no_stage():
    for m in _modules():
        assert not sources.imports(m, REPO, ("stages",)), f"{m.relative_to(REPO)} imports a stage module"


@pytest.mark.parametrize(
    "source, target, ok",
    [
        ("data/factors.py", "util/errors.py", True),
        ("util/errors.py", "data/factors.py", False),
        ("eval/metrics.py", "train/training.py", False),
        ("model/losses.py", "model/networks.py", True),
    ],
)
def test_the_checker_sees_an_import_that_goes_up_or_sideways(source, target, ok):
    graph = {REPO / "dismi" / source: {REPO / "dismi" / target}}
    assert (violations(graph) == []) is ok


def test_the_checker_sees_a_cycle():
    a, b, c = (REPO / "dismi" / "data" / n for n in ("a.py", "b.py", "c.py"))
    assert cycles({a: {b}, b: {c}, c: {a}}) == [[a, b, c, a]]
    assert cycles({a: {b}, b: {c}, c: set()}) == []
