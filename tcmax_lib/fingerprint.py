"""What decides a training, described exactly: code digests and value descriptions for `runstore`'s keys (nb 00).

    code_digest(source)          -> sha256 of a module's code, comments, docstrings and layout aside
    reachable(pkg)               -> the library's modules a training can run (imported from DECIDING, at any depth)
    library_fingerprint()        -> the digest of those modules' code
    class_code(classes)          -> digests of classes defined outside torch and the library (a notebook's own)
    describe(value)              -> a JSON-able description, equal exactly when the values are (tensors by content)
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import inspect
import sys
import textwrap
from pathlib import Path
from typing import Any

import torch


class NotStorable(Exception):
    """A value the key cannot describe exactly (a function, an object without fields): train, do not store (nb 00)."""


def code_digest(source: str) -> str:
    """sha256 of a module's code without its comments, docstrings and layout (notebook 00).

    Two sources that differ only in those compile to the same trainer, so a fixed typo in a docstring
    does not throw away hours of stored trainings; any change to the code does.
    """
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.dump(tree, include_attributes=False).encode()).hexdigest()


DECIDING = ("train", "methods", "models", "resnet")   # the trainer, the methods, the models: what decides a training
NOT_DECIDING = {"runstore", "fingerprint", "files"}   # how an entry is kept and named, not what it holds (FORMAT)


def reachable(pkg: Path, start: tuple[str, ...] = DECIDING) -> set[str]:
    """The package's modules that `start` imports, directly or through each other, at any depth (notebook 00).

    Module names are relative to the package ('train', 'methods.ogm_ge'); imports inside functions count.
    """
    def path_of(mod: str) -> Path | None:
        base = pkg.joinpath(*mod.split(".")) if mod else pkg
        return next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)

    seen, todo = set(), list(start)
    while todo:
        mod = todo.pop()
        path = path_of(mod)
        if mod in seen or path is None:
            continue
        seen.add(mod)
        here = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]   # the module's package
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("tcmax_lib")):
                parts = here[:len(here) - node.level + 1] if node.level else []
                parts += [p for p in (node.module or "").split(".") if p and p != "tcmax_lib"] if node.level or \
                    node.module != "tcmax_lib" else []
                target = ".".join(parts)                        # '' is the package itself: only its names
                todo += ([target] if target else []) + [f"{target}.{a.name}" if target else a.name for a in node.names]
            elif isinstance(node, ast.Import):
                todo += [a.name.removeprefix("tcmax_lib.") for a in node.names if a.name.startswith("tcmax_lib.")]
    return seen


@functools.lru_cache(maxsize=1)
def _covered() -> frozenset[str]:
    return frozenset(reachable(Path(__file__).resolve().parent) - NOT_DECIDING)


@functools.lru_cache(maxsize=1)
def library_fingerprint() -> str:
    """sha256 of the code (`code_digest`) of every module a training can run: `reachable` from DECIDING (nb 00).

    What a notebook does with a finished training (metrics, readings, plots) is recomputed on a load, so
    the modules that only measure or read results can change without throwing away stored trainings.
    """
    pkg = Path(__file__).resolve().parent
    h = hashlib.sha256(f"python {sys.version_info[0]}.{sys.version_info[1]}".encode())
    for mod in sorted(_covered()):
        path = next(p for p in (pkg.joinpath(*mod.split(".")).with_suffix(".py"),
                                pkg.joinpath(*mod.split("."), "__init__.py")) if p.is_file())
        h.update(mod.encode() + b"\0" + code_digest(path.read_text()).encode())
    return h.hexdigest()


def _tensor_digest(t: torch.Tensor) -> str:
    t = t.detach().cpu().contiguous()
    raw = t.reshape(-1).view(torch.uint8) if t.numel() else torch.zeros(0, dtype=torch.uint8)
    return hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode() + raw.numpy().tobytes()).hexdigest()


def describe(value: Any) -> Any:
    """A JSON-able description that is equal exactly when the values are (tensors by content) (notebook 00)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return repr(value)                                    # exact, and NaN/inf stay JSON-able
    if isinstance(value, torch.Tensor):
        return {"tensor": _tensor_digest(value)}
    if isinstance(value, torch.device):
        return {"device": value.type}
    if isinstance(value, (list, tuple)):
        return [describe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): describe(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"class": f"{type(value).__module__}.{type(value).__qualname__}",
                **{f.name: describe(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    raise NotStorable(f"{type(value).__qualname__} has no exact description")


def class_code(classes: set[type]) -> list[str]:
    """`code_digest` of each class whose code no other part of the key covers (notebook 00).

    torch's classes are covered by its version, the library's by `library_fingerprint` where their module is
    `reachable`; any other class (one a notebook defines, or a library class beyond the trainer's reach) is
    keyed by its own source, and one whose source cannot be read is `NotStorable`.
    """
    covered = _covered()
    out = []
    for cls in sorted(classes, key=lambda c: f"{c.__module__}.{c.__qualname__}"):
        top, _, rest = cls.__module__.partition(".")
        if top in ("torch", "builtins", "typing", "abc") or (top == "tcmax_lib" and rest in covered):
            continue
        try:
            out.append(f"{cls.__module__}.{cls.__qualname__}:{code_digest(textwrap.dedent(inspect.getsource(cls)))}")
        except (OSError, TypeError, SyntaxError) as exc:
            raise NotStorable(f"no source for {cls.__qualname__}") from exc
    return out


def describe_method(method: Any) -> Any:
    """A training method described exactly: its settings and state (`describe`) and code `class_code` (nb 00)."""
    code = class_code(set(type(method).__mro__))
    if dataclasses.is_dataclass(method):
        return {"code": code, **describe(method)}
    state = {k: v for k, v in vars(method).items() if not k.startswith("_")}
    return {"class": f"{type(method).__module__}.{type(method).__qualname__}", "code": code, **describe(state)}
