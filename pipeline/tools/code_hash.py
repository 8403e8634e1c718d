"""The code a step runs: the import closure of its module inside ``pipeline``, and a hash of those files.

Snakemake's code trigger sees a rule's own ``script:`` file, not the package it calls, so each rule carries
``code_hash(<step>)`` in its ``params``: editing any module a step imports, however deep (function-level imports
included), reruns exactly the rules whose steps import it. The closure is read from the source (``ast``), never
listed by hand, so it cannot drift from the imports.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

PACKAGE = "pipeline"
ROOT = Path(__file__).resolve().parents[1]  # the pipeline package directory


def module_file(name: str, root: Path = ROOT) -> Path | None:
    """The source file of module ``name`` (``pipeline.a.b``), a package's ``__init__.py``, or None."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = root.joinpath(*parts[1:])
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


def imports_of(path: Path, name: str, root: Path = ROOT, parents: bool = True) -> set[str]:
    """Modules of the package that ``path`` (module ``name``) imports anywhere in its body; with ``parents``, also
    the packages above each of them (whose ``__init__`` runs first)."""
    stat = Path(path).stat()
    return set(_imports_of(str(path), stat.st_mtime_ns, stat.st_size, name, str(root), parents))


@functools.cache
def _imports_of(path: str, mtime_ns: int, size: int, name: str, root: str, parents: bool) -> frozenset[str]:
    """:func:`imports_of`, parsed once per version of the file: the rules' closures share most modules, and the
    workflow computes them at every start (the SLURM jobs' included)."""
    path, root = Path(path), Path(root)
    is_pkg = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name if is_pkg else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}  # `from pkg import module`
    out = set()
    for mod in found:
        while mod and module_file(mod, root) is None:
            mod = mod.rpartition(".")[0]
        if mod.startswith(PACKAGE):
            out.add(mod)
    if not parents:
        return frozenset(out)
    for mod in list(out):
        parts = mod.split(".")
        out |= {".".join(parts[:k]) for k in range(1, len(parts))}
    return frozenset(out)


def import_closure(module: str, root: Path = ROOT) -> list[Path]:
    """Every source file of the package that importing ``module`` may run, sorted."""
    parts = module.split(".")
    seen, todo = set(), [".".join(parts[:k]) for k in range(len(parts), 0, -1)]  # the module, then its packages
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        f = module_file(mod, root)
        if f is None:
            raise ModuleNotFoundError(f"no module {mod!r} under {root}")
        todo += sorted(imports_of(f, mod, root) - seen)
    return sorted(module_file(m, root) for m in seen)


def module_name(path: Path, root: Path = ROOT) -> str:
    """``.../pipeline/core/io.py`` -> ``pipeline.core.io``; a package's ``__init__.py`` -> the package."""
    parts = Path(path).relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def code_hash(step: str, root: Path = ROOT) -> str:
    """Hash of the files in the import closure of ``pipeline.steps.<step>`` (paths and contents)."""
    h = hashlib.sha256()
    for f in import_closure(f"{PACKAGE}.steps.{step}", root):
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]
