"""dvc.yaml against the code: each stage's `params:` are the knobs its code reads, its Python `deps:` the
modules its code imports, and no stage imports another stage."""

import ast
import shlex
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dismi.util import sources
from stages import params as P
from stages.__main__ import app

REPO = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
PACKAGES = ("dismi", "stages")


def _imports(path: Path) -> set[str]:
    """The project modules (repository-relative .py paths) that one file imports directly."""
    return {str(p.relative_to(REPO)) for p in sources.imports(path, REPO, PACKAGES)}


def _closure(module: str) -> set[str]:
    """`module` and every project module it imports, directly or not."""
    return {str(p) for p in sources.closure(REPO / module, REPO, PACKAGES)}


def _module(stage: str) -> str:
    return f"stages/{stage}.py"  # `python -m stages <stage>` runs stages/<stage>.py (tests/test_cli.py)


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_stages_python_deps_are_the_modules_its_code_imports(stage):
    listed = {d for d in STAGES[stage]["deps"] if d.endswith(".py")}
    code = _closure(_module(stage))
    assert listed == code, f"dvc.yaml {stage}: add {sorted(code - listed)}, remove {sorted(listed - code)}"


def _defines_main(path: Path) -> bool:
    return any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in ast.parse(path.read_text()).body)


def test_no_command_module_imports_another():
    # The commands: the modules stages/__main__.py imports that define a `main` (not params.py or _driver.py,
    # which hold what the commands share).
    commands = {m for m in _imports(REPO / "stages" / "__main__.py") if _defines_main(REPO / m)}
    assert {_module(s) for s in STAGES} <= commands
    for command in commands:
        others = _closure(command) & (commands - {command})
        assert not others, f"{command} imports {sorted(others)}: move what they share into a non-command module"


class _Read(Exception):
    pass


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_stages_dvc_params_are_the_params_its_code_reads(stage, tmp_path, monkeypatch, params_file):
    """Run the stage's dvc.yaml command in an empty folder and note which keys it asks params.yaml for
    (its config's: stages/params.py); it stops at that read, or fails on its missing inputs."""
    read = []

    def spy(path, keys):  # the keys that change an output: an untracked one (checkpoint_every) is read unlisted
        read.extend(k for k in keys if P.KNOBS[k].tracked)
        raise _Read

    monkeypatch.setattr(P, "load", spy)
    monkeypatch.chdir(tmp_path)
    params_file(tmp_path)
    cmd = shlex.split(STAGES[stage]["cmd"])
    assert cmd[:3] == ["python", "-m", "stages"]
    result = CliRunner().invoke(app, cmd[3:])
    assert result.exception is not None and result.exit_code != 0  # it never got to work in an empty folder
    listed = STAGES[stage].get("params", [])
    assert len(set(listed)) == len(listed), f"dvc.yaml {stage}: a param is listed twice"
    assert set(listed) == set(read), (
        f"dvc.yaml {stage}: add {sorted(set(read) - set(listed))}, remove {sorted(set(listed) - set(read))}"
    )
