"""Models from elsewhere: find, import and identify a HEAR module, a ``.py`` file, an encoder class or a model object.

Forms of a reference (``docs/own-model.md``), besides the registered names of :mod:`hear_atst.registry`:

- ``mypkg.my_hear_module``: an importable HEAR module (``load_model``, ``get_scene_embeddings``,
  ``get_timestamp_embeddings``);
- ``path/to/my_model.py``: a file defining such a module (imported under a name holding its sha256, so two files
  of one name never meet; its folder joins ``sys.path`` so that it can import the files beside it);
- ``mypkg.module:Class`` or ``path/to/file.py:Class``: a ``torch.nn.Module`` frame encoder
  (:mod:`hear_atst.encoder_api`);
- in Python, a module object, a loaded HEAR model object or an encoder object.

Identity: the code is identified by its installed distribution's name and version (``importlib.metadata``) or,
outside any distribution, by the sha256 of its file; an object in memory adds the sha256 of its state dict.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from hear_atst import encoder_api
from hear_atst.checkpoints import sha256_file
from hear_atst.encoder_api import EncoderModel
from hear_atst.model_calls import CheckedApi, model_code
from hear_atst.preflight import check_attributes, preflight
from hear_atst.registry import MODELS

HEAR_FUNCTIONS = ("load_model", "get_scene_embeddings", "get_timestamp_embeddings")


@dataclass(frozen=True)
class Parameters:
    """What a loader (``load_model`` or an encoder's constructor) accepts."""

    weights: str | None  # the parameter that receives --weights, if any
    named: frozenset[str]  # keyword arguments it takes (the weights parameter excluded)
    any_keyword: bool  # it has **kwargs

    def takes(self, name: str) -> bool:
        return name in self.named or self.any_keyword


def _parameters(loader: Any, weights: str | None) -> Parameters:
    """``weights``: the name of the weights parameter, or ``None`` for the first positional one (HEAR's
    ``model_file_path``)."""
    try:
        parameters = list(inspect.signature(loader).parameters.values())
    except (TypeError, ValueError):  # no signature (a builtin): everything is passed through unchecked
        return Parameters(weights=weights or "model_file_path", named=frozenset(), any_keyword=True)
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    if weights is None:
        positional = [p for p in parameters if p.kind in (inspect.Parameter.POSITIONAL_ONLY,
                                                          inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        weights = positional[0].name if positional else None
    named = frozenset(p.name for p in parameters if p.kind in keyword and p.name != weights)
    any_keyword = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    has_weights = weights is not None and (any(p.name == weights for p in parameters) or any_keyword)
    return Parameters(weights=weights if has_weights else None, named=named, any_keyword=any_keyword)


class ForeignModel:
    """A model that is not registered here: its names, its code identity, and how to load it."""

    def __init__(self, name: str, module: str, identity: dict[str, Any], code_roots: list[Path],
                 record: dict[str, Any] | None = None) -> None:
        self.name = name  # shown and used in folder names, e.g. "hearbaseline.naive"
        self.module = module  # recorded as its module: the module path, a file's stem, else the name
        self.identity = identity  # JSON: what must match for cached embeddings to be reused
        self.record = {**identity, **(record or {})}  # identity plus where it came from, for results.json
        self.code_roots = tuple(code_roots)  # its files or package folders (tracebacks end in them)
        self.reference: str | None = None  # the text that names it again in another process (None: in memory)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        """Pickled as its reference, resolved again where it is unpickled (a suite runner's worker)."""
        if self.reference is None:
            raise TypeError(f"{self.name}: a model object in memory cannot be sent to another process; name it by "
                            "module path, .py file or module:Class")
        return foreign_model, (self.reference,)

    def name_items(self, chars: int) -> dict[str, str]:
        """The identity in folder names: ``{distribution: version}`` or ``{"sha256": <file hash>}``, and for an
        object in memory ``{"state": <state hash>}`` (hashes cut to ``chars``)."""
        items = {}
        if "distribution" in self.identity:
            items[self.identity["distribution"]] = self.identity["version"]
        for key, label in (("file_sha256", "sha256"), ("source_sha256", "source"), ("state_sha256", "state")):
            if key in self.identity:
                items[label] = self.identity[key][:chars]
        return items

    def check_arguments(self, weights: Path | None, options: dict[str, Any]) -> None:
        """Refuse weights or options the loader does not take (one line naming what it takes)."""
        parameters = self.parameters()
        what = self.loader_name()
        if weights is not None and parameters.weights is None:
            raise ValueError(f"--weights {weights}: {what} takes no weights file argument")
        if "precision" in options:
            raise ValueError("set the model's precision with --precision, not --model-option precision=...")
        unknown = sorted(key for key in options if not parameters.takes(key))
        if unknown:
            accepted = ", ".join(sorted(parameters.named)) or "none"
            raise ValueError(f"model {self.name} has no option {', '.join(unknown)}: {what} takes options: {accepted}")

    def precision_note(self, precision: str) -> str | None:
        """What a non-default precision does to this model (said before embedding)."""
        if precision == "fp32":
            return None
        if self.uses_autocast(precision):
            return f"{self.name} takes no precision argument: its calls run under {precision} autocast"
        return f"{self.name}: precision={precision!r} passed to {self.loader_name()}"

    def uses_autocast(self, precision: str) -> bool:
        return precision == "bf16"

    def load(self, weights: Path | None, options: dict[str, Any], precision: str, device: str,
             check: bool = True) -> tuple[CheckedApi, nn.Module]:
        """The model on ``device`` in eval mode and its checked API; with ``check``, after the pre-flight check."""
        api, model = self.make(weights, options, precision)
        check_attributes(self.name, model)
        with model_code(self.code_roots):
            model = model.to(device).eval()
        if check:
            preflight(api, model)
        return api, model

    def parameters(self) -> Parameters:
        raise NotImplementedError

    def loader_name(self) -> str:
        raise NotImplementedError

    def make(self, weights: Path | None, options: dict[str, Any], precision: str) -> tuple[CheckedApi, nn.Module]:
        raise NotImplementedError


class HearModule(ForeignModel):
    """An imported HEAR module: ``load_model(weights, **options)`` and its two embedding functions."""

    def __init__(self, module: ModuleType, name: str, identity: dict[str, Any], code_roots: list[Path],
                 record: dict[str, Any] | None = None) -> None:
        missing = [f for f in HEAR_FUNCTIONS if not callable(getattr(module, f, None))]
        if missing:
            raise ValueError(f"{name} is not a HEAR module: it lacks {', '.join(missing)} (a HEAR module defines "
                             f"{', '.join(HEAR_FUNCTIONS)}; name an encoder class as {name}:ClassName)")
        super().__init__(name, name, {"kind": "hear-module", **identity}, code_roots, record)
        self.hear_module = module

    def parameters(self) -> Parameters:
        return _parameters(self.hear_module.load_model, None)

    def loader_name(self) -> str:
        return f"{self.name}.load_model"

    def uses_autocast(self, precision: str) -> bool:
        return precision == "bf16" and "precision" not in self.parameters().named

    def make(self, weights: Path | None, options: dict[str, Any], precision: str) -> tuple[CheckedApi, nn.Module]:
        extra = {"precision": precision} if precision != "fp32" and not self.uses_autocast(precision) else {}
        args = [str(weights)] if weights is not None else []
        with model_code(self.code_roots):
            model = self.hear_module.load_model(*args, **options, **extra)
        api = CheckedApi(self.name, self.hear_module.get_scene_embeddings, self.hear_module.get_timestamp_embeddings,
                         self.code_roots, autocast=self.uses_autocast(precision))
        return api, model


class EncoderClass(ForeignModel):
    """A ``torch.nn.Module`` frame encoder class: ``Class(weights=FILE, **options)``, wrapped into the HEAR API."""

    def __init__(self, cls: type[nn.Module], name: str, identity: dict[str, Any], code_roots: list[Path],
                 record: dict[str, Any] | None = None) -> None:
        super().__init__(name, name, {"kind": "encoder", "class": cls.__qualname__, **identity}, code_roots, record)
        self.cls = cls

    def parameters(self) -> Parameters:
        return _parameters(self.cls, "weights")

    def loader_name(self) -> str:
        return f"{self.name}()"

    def make(self, weights: Path | None, options: dict[str, Any], precision: str) -> tuple[CheckedApi, nn.Module]:
        extra = {"weights": str(weights)} if weights is not None else {}
        with model_code(self.code_roots):
            encoder = self.cls(**options, **extra)
        return encoder_checked_api(self.name, self.code_roots, precision), EncoderModel(encoder, self.name)


class ModelObject(ForeignModel):
    """A model already in memory: a loaded HEAR model with its module's functions, or an encoder object."""

    def __init__(self, model: nn.Module, api: ModuleType | None) -> None:
        cls = type(model)
        self.encoder = not hasattr(model, "scene_embedding_size") and api is None
        if not self.encoder:
            api = api or sys.modules.get(cls.__module__)
            missing = [f for f in HEAR_FUNCTIONS[1:] if not callable(getattr(api, f, None))]
            if missing:
                raise ValueError(f"{cls.__qualname__} object: its module {cls.__module__} lacks {', '.join(missing)}; "
                                 "pass the HEAR module that goes with it (api=<module>)")
        source = api if not self.encoder else sys.modules.get(cls.__module__)
        identity = {"kind": "in-memory", "class": cls.__qualname__, **_object_code_identity(cls, source),
                    "state_sha256": state_sha256(model)}
        name = api.__name__ if api is not None and not self.encoder else cls.__name__
        roots = _module_roots(source) if source is not None else []
        super().__init__(name, name, identity, roots)
        self.model, self.api = model, api

    def parameters(self) -> Parameters:
        return Parameters(weights=None, named=frozenset(), any_keyword=False)

    def loader_name(self) -> str:
        return "a model object (load it with its weights and options before passing it)"

    def make(self, weights: Path | None, options: dict[str, Any], precision: str) -> tuple[CheckedApi, nn.Module]:
        if self.encoder:
            return encoder_checked_api(self.name, self.code_roots, precision), EncoderModel(self.model, self.name)
        assert self.api is not None
        return CheckedApi(self.name, self.api.get_scene_embeddings, self.api.get_timestamp_embeddings,
                          self.code_roots, autocast=precision == "bf16"), self.model


def encoder_checked_api(name: str, code_roots: tuple[Path, ...], precision: str) -> CheckedApi:
    return CheckedApi(name, encoder_api.get_scene_embeddings, encoder_api.get_timestamp_embeddings, code_roots,
                      autocast=precision == "bf16")


# --- references --------------------------------------------------------------------------------------------------


def foreign_model(reference: str | ModuleType | nn.Module, api: ModuleType | None = None) -> ForeignModel:
    """The model a reference names (any form of this module's docstring); a one-line error when it names none."""
    if isinstance(reference, nn.Module):
        return ModelObject(reference, api)
    if api is not None:
        raise ValueError("api= goes with a loaded HEAR model object only")
    if isinstance(reference, ModuleType):
        model = HearModule(reference, reference.__name__, code_identity(reference), _module_roots(reference))
        model.reference = reference.__name__
        return model
    if not isinstance(reference, str):
        raise TypeError(f"a model is a name, a module, or a torch.nn.Module, not {type(reference).__name__}")
    target, class_name = split_class(reference)
    module, name, identity, record = _import_target(target, reference)
    roots = _module_roots(module)
    found: ForeignModel
    if class_name is None:
        found = HearModule(module, name, identity, roots, record)
    else:
        found = EncoderClass(_encoder_class(module, class_name, target, reference), f"{name}.{class_name}", identity,
                             roots, record)
    located = record.get("file", target)  # a file by its absolute path, found from any working folder
    found.reference = f"{located}:{class_name}" if class_name else located
    return found


def _encoder_class(module: ModuleType, class_name: str, target: str, reference: str) -> type[nn.Module]:
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        found = sorted(k for k, v in vars(module).items() if isinstance(v, type) and issubclass(v, nn.Module)
                       and v.__module__ == module.__name__)
        raise ValueError(f"--model {reference}: {target} has no torch.nn.Module class {class_name} (its classes: "
                         f"{', '.join(found) or 'none'})")
    return cls


def split_class(reference: str) -> tuple[str, str | None]:
    """``"pkg.mod:Class"`` -> ``("pkg.mod", "Class")``; no class part -> ``(reference, None)``."""
    target, sep, tail = reference.rpartition(":")
    if sep and target and tail.isidentifier():
        return target, tail
    return reference, None


def _import_target(target: str, reference: str) -> tuple[ModuleType, str, dict[str, Any], dict[str, Any]]:
    """The module ``target`` names (a .py path or a module path), its display name, code identity and record."""
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target).expanduser()
        if not path.is_file():
            problem = "is a directory" if path.is_dir() else "does not exist"
            raise ValueError(f"--model {reference}: {path} {problem} (a model file is a .py file)")
        if path.suffix != ".py":
            raise ValueError(f"--model {reference}: {path} is not a .py file")
        digest = sha256_file(path)
        return import_file(path, digest), path.stem, {"file_sha256": digest}, {"file": str(path.resolve())}
    module = import_module_path(target, reference)
    return module, target, code_identity(module), {}


def import_module_path(name: str, reference: str | None = None) -> ModuleType:
    """Import module ``name``; a one-line error when no such module exists, :class:`ModelRaised` when its code
    raises."""
    unknown = LookupError(f"unknown model {reference or name!r}; known models: {', '.join(MODELS)} (or an importable "
                          "HEAR module, a .py file, or module:Class, see docs/own-model.md)")
    if not all(part.isidentifier() for part in name.split(".")):
        raise unknown
    top = name.partition(".")[0]
    try:
        top_spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        top_spec = None
    if top_spec is None:
        raise unknown
    with model_code(_spec_roots(top_spec)):
        try:
            spec = importlib.util.find_spec(name)  # imports the parent packages
        except ModuleNotFoundError as error:
            if not _names_part_of(error, name):  # a parent package needs a module that is not installed
                raise
            spec = None
    if spec is None:
        raise unknown
    with model_code(_spec_roots(top_spec)):
        return importlib.import_module(name)


def _names_part_of(error: ModuleNotFoundError, name: str) -> bool:
    """Whether the missing module is ``name`` itself or one of its parent packages."""
    return error.name is not None and (name == error.name or name.startswith(error.name + "."))


def import_file(path: Path, digest: str) -> ModuleType:
    """Import a .py file under ``<stem>_sha256_<digest[:12]>``: two different files of one name are two modules.
    The file's folder is appended to ``sys.path`` so that it can import the modules beside it."""
    stem = re.sub(r"\W", "_", path.stem)
    name = f"{stem}_sha256_{digest[:12]}"
    if name in sys.modules:
        return sys.modules[name]
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.append(folder)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        with model_code([path.resolve()]):
            spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _spec_roots(spec: importlib.machinery.ModuleSpec) -> list[Path]:
    if spec.submodule_search_locations:
        return [Path(p).resolve() for p in spec.submodule_search_locations]
    return [Path(spec.origin).resolve()] if spec.origin else []


def _module_roots(module: ModuleType) -> list[Path]:
    """A module's code: its top-level package's folders, or its file."""
    top = sys.modules.get(module.__name__.partition(".")[0], module)
    paths = list(getattr(top, "__path__", []))
    if paths:
        return [Path(p).resolve() for p in paths]
    file = getattr(module, "__file__", None)
    return [Path(file).resolve()] if file else []


# --- identity ----------------------------------------------------------------------------------------------------


def code_identity(module: ModuleType) -> dict[str, str]:
    """``{"distribution", "version"}`` of the installed distribution that holds ``module``, else the sha256 of its
    file."""
    distribution = _distribution(module)
    if distribution:
        return {"distribution": distribution, "version": importlib.metadata.version(distribution)}
    file = getattr(module, "__file__", None)
    if not file:
        raise ValueError(f"module {module.__name__} has no file and no installed distribution: its code cannot be "
                         "identified")
    return {"file_sha256": sha256_file(file)}


@functools.cache
def _packages_distributions() -> dict[str, list[str]]:
    """Top-level package -> installed distributions (read once: it scans every installed distribution)."""
    return importlib.metadata.packages_distributions()


def _distribution(module: ModuleType) -> str | None:
    """The installed distribution that provides ``module``'s top-level package, if any."""
    distributions = _packages_distributions().get(module.__name__.partition(".")[0])
    return sorted(distributions)[0] if distributions else None


def _object_code_identity(cls: type, module: ModuleType | None) -> dict[str, str]:
    """The code of an object's class: its module's :func:`code_identity`, else the sha256 of the class's source
    (a notebook cell), else recorded as unidentified."""
    if module is not None and (getattr(module, "__file__", None) or _distribution(module)):
        return code_identity(module)
    try:
        return {"source_sha256": hashlib.sha256(inspect.getsource(cls).encode()).hexdigest()}
    except (OSError, TypeError):
        return {"code": "unidentified"}


def state_sha256(model: nn.Module) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of a model's state dict (parameters and buffers)."""
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode() + b"\0")
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous()
            digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            digest.update(repr(value).encode())
    return digest.hexdigest()

