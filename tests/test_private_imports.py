"""No package imports another package's private module.

A package is a direct subfolder of ``sitemesh/`` (``sitemesh/bus``, ``sitemesh/state``,
...); a private module is one whose name starts with ``_`` (``sitemesh/policy/_egress.py``).
The package's ``__init__.py`` front, with its ``__all__``, is the only way in from
outside: ``from ..policy import EgressGuard``, never ``from ..policy._egress import ...``.

The check parses every ``.py`` file under ``sitemesh/`` (the packages and the top-level
modules such as ``sitemesh/config.py`` and ``sitemesh/errors.py``) and looks at every
import in it, also the ones inside functions or under ``TYPE_CHECKING``, with relative
imports resolved to absolute module names. Files inside ``sitemesh/<pkg>/`` (its
subfolders too, e.g. ``sitemesh/state/migrations``) may import ``sitemesh.<pkg>``'s
private modules. ``tests/`` is not checked: tests may reach into anything.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "sitemesh"
SOURCE = ROOT / PACKAGE


@dataclass(frozen=True, order=True)
class Violation:
    path: str
    line: int
    target: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line} imports {self.target}"


def module_name(path: Path, root: Path = ROOT) -> str:
    """``sitemesh/state/_db.py`` -> ``sitemesh.state._db``; ``.../__init__.py`` -> the package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _owner(module: str) -> str | None:
    """The package (``sitemesh.<pkg>``) a module belongs to; ``None`` for top-level modules
    (``sitemesh.config``) and for ``sitemesh`` itself."""
    parts = module.split(".")
    if len(parts) < 2 or parts[0] != PACKAGE:
        return None
    owner = ".".join(parts[:2])
    if len(parts) == 2 and not (ROOT / PACKAGE / parts[1]).is_dir():
        return None  # a top-level module: sitemesh/config.py
    return owner


def _private_target(target: str) -> str | None:
    """``target`` cut after its first private part below ``sitemesh.<pkg>``, if it has one:
    ``sitemesh.bus._subjects.X`` -> ``sitemesh.bus._subjects``."""
    parts = target.split(".")
    if len(parts) < 3 or parts[0] != PACKAGE:
        return None
    for i in range(2, len(parts)):
        if _is_private(parts[i]):
            return ".".join(parts[: i + 1])
    return None


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str | None:
    """The absolute module name of a ``from ... import`` (``None``: above the top)."""
    if node.level == 0:
        return node.module
    base = module.split(".") if is_package else module.split(".")[:-1]
    if node.level - 1 > len(base) - 1:
        return None
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _imported(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """Every ``(line, module or module.name)`` imported anywhere in ``tree``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(node, module, is_package)
            if source is None:
                continue
            found.append((node.lineno, source))
            # `from sitemesh.bus import _subjects` imports the private module too.
            found.extend((node.lineno, f"{source}.{a.name}") for a in node.names if a.name != "*")
        elif isinstance(node, ast.Call) and (name := _dynamic_import(node)) is not None:
            found.append((node.lineno, name))
    return found


def _dynamic_import(call: ast.Call) -> str | None:
    """The module of ``importlib.import_module("...")`` / ``__import__("...")``, if literal."""
    func = call.func
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if called not in {"import_module", "__import__"} or not call.args:
        return None
    first = call.args[0]
    return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None


def find_private_imports(
    source: str, module: str, path: str, *, is_package: bool = False
) -> list[Violation]:
    """The imports of another package's private modules in ``source``, the text of
    ``module`` (``path`` names it in the report; ``is_package``: it is an ``__init__``)."""
    tree = ast.parse(source, filename=path)
    importer = _owner(module)
    seen: set[Violation] = set()
    for line, target in _imported(tree, module, is_package):
        private = _private_target(target)
        if private is None or _owner(private) == importer:
            continue
        seen.add(Violation(path, line, private))
    return sorted(seen)


def source_files() -> list[Path]:
    return sorted(SOURCE.rglob("*.py"))


def scan() -> list[Violation]:
    found: list[Violation] = []
    for file in source_files():
        found += find_private_imports(
            file.read_text(encoding="utf-8"),
            module_name(file),
            file.relative_to(ROOT).as_posix(),
            is_package=file.name == "__init__.py",
        )
    return sorted(found)


def test_no_package_imports_another_packages_private_module() -> None:
    found = scan()
    assert not found, (
        f"{len(found)} import(s) of another package's private module; import from the "
        "package front (its __init__.py, add the name to __all__) instead:\n"
        + "\n".join(map(str, found))
    )


def test_scan_covers_the_packages_and_the_top_level_modules() -> None:
    names = {module_name(f) for f in source_files()}
    assert {"sitemesh.config", "sitemesh.errors", "sitemesh.client"} <= names
    assert {"sitemesh.policy._egress", "sitemesh.state.migrations.env", "sitemesh.cli"} <= names
    assert not any(n.startswith("tests") for n in names)


# -- positive controls: the checker reports what it must ----------------------------


def check(source: str, module: str, *, is_package: bool = False) -> list[str]:
    path = module.replace(".", "/") + ("/__init__.py" if is_package else ".py")
    return [str(v) for v in find_private_imports(source, module, path, is_package=is_package)]


def test_reports_a_relative_private_cross_package_import() -> None:
    source = "from ..policy._egress import EgressGuard\n"
    assert check(source, "sitemesh.cli._app") == [
        "sitemesh/cli/_app.py:1 imports sitemesh.policy._egress"
    ]


def test_reports_lazy_absolute_and_module_imports() -> None:
    source = (
        "import os\n"
        "import sitemesh.bus._subjects as subjects\n"
        "from sitemesh.state import Store\n"
        "\n"
        "def later():\n"
        "    from ..state._db import create_engine\n"
        "    from ..bus import _worker\n"
        "    from . import _roles\n"
        "    return importlib.import_module('sitemesh.models._ledger')\n"
        "\n"
        "class C:\n"
        "    def m(self):\n"
        "        from sitemesh.edge_node._models import build_model_client\n"
    )
    assert check(source, "sitemesh.replay._site") == [
        "sitemesh/replay/_site.py:2 imports sitemesh.bus._subjects",
        "sitemesh/replay/_site.py:6 imports sitemesh.state._db",
        "sitemesh/replay/_site.py:7 imports sitemesh.bus._worker",
        "sitemesh/replay/_site.py:9 imports sitemesh.models._ledger",
        "sitemesh/replay/_site.py:13 imports sitemesh.edge_node._models",
    ]


def test_reports_imports_from_a_package_front_and_top_level_modules() -> None:
    # In an __init__.py one dot is the package itself, two dots is sitemesh.
    assert check("from ..bus._subjects import ALL_IN\n", "sitemesh.topology", is_package=True) == [
        "sitemesh/topology/__init__.py:1 imports sitemesh.bus._subjects"
    ]
    # sitemesh/config.py and sitemesh/errors.py belong to no package: nothing private is theirs.
    assert check("from .state._db import is_sqlite\n", "sitemesh.config") == [
        "sitemesh/config.py:1 imports sitemesh.state._db"
    ]
    assert check("def f():\n    from sitemesh.policy._vault import Vault\n", "sitemesh.errors") == [
        "sitemesh/errors.py:2 imports sitemesh.policy._vault"
    ]


@pytest.mark.parametrize(
    ("source", "module"),
    [
        ("from ..policy import EgressGuard\n", "sitemesh.cli._app"),  # the front
        ("from ._db import create_engine\n", "sitemesh.state._store"),  # own package
        ("from ..state._db import create_engine\n", "sitemesh.state._store"),
        ("from sitemesh.state._models import Base\n", "sitemesh.state._vault_models"),
        ("from sitemesh.state._db import create_engine\n", "sitemesh.state.migrations.env"),
        ("from .._models import Base\n", "sitemesh.state.migrations.env"),
        ("from ._egress import EgressGuard\n", "sitemesh.policy"),  # front of its own package
        ("from . import __version__\n", "sitemesh.cli._app"),
        ("from .bus import HDR_MSG_ID\n", "sitemesh.client"),
        ("import sitemesh.bus\nfrom sitemesh.bus import *\n", "sitemesh.config"),
    ],
)
def test_allows_fronts_and_own_private_modules(source: str, module: str) -> None:
    assert check(source, module, is_package=module in {"sitemesh.policy"}) == []


def test_migrations_resolve_to_the_state_package() -> None:
    # Two dots from sitemesh/state/migrations/env.py is sitemesh.state, three is sitemesh.
    assert check("from ...bus._types import MsgContext\n", "sitemesh.state.migrations.env") == [
        "sitemesh/state/migrations/env.py:1 imports sitemesh.bus._types"
    ]
