"""The source files a program runs, and one SHA-256 over them.

A training checkpoint records the hash of its stage's code, so only the code that made it resumes it:
after an edit of, say, dismi/model/losses.py, the stage starts fresh instead of continuing (or, for a
finished checkpoint, re-saving) weights the old loss made. The files are the entry module and every
module of `packages` it imports, directly or not, read from the source with `ast`: the same set a
stage's Python `deps:` in dvc.yaml list.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path


def imports(path: Path, root: Path, packages: tuple[str, ...]) -> set[Path]:
    """The modules of `packages` (files under `root`) that the file `path` imports directly."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in packages:
            folder = node.module.replace(".", "/")
            modules = {f"{folder}/{a.name}.py" for a in node.names}  # from dismi.util import devices
            found |= {m for m in modules if (root / m).is_file()} or {folder + ".py", folder + "/__init__.py"}
        elif isinstance(node, ast.Import):
            names = [a.name.replace(".", "/") for a in node.names if a.name.split(".")[0] in packages]
            found |= {n + ".py" for n in names} | {n + "/__init__.py" for n in names}
    return {root / m for m in found if (root / m).is_file()}


def closure(entry: Path, root: Path, packages: tuple[str, ...]) -> list[Path]:
    """`entry` and every module of `packages` it imports, directly or not, as paths relative to `root`, sorted."""
    root = root.resolve()
    seen: set[Path] = set()
    todo = [entry.resolve()]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += imports(m, root, packages)
    return sorted(p.relative_to(root) for p in seen)


def sha256(entry: Path, root: Path, packages: tuple[str, ...]) -> str:
    """One SHA-256 over the closure's relative paths and bytes: changes when any of those files does."""
    h = hashlib.sha256()
    for rel in closure(entry, root, packages):
        data = (root / rel).read_bytes()
        h.update(f"{rel.as_posix()}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()
