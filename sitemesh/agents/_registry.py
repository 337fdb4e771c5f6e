"""The agent registry: the one list of roles, from entry points and import paths.

An installed package declares its agents in the ``sitemesh.agents`` entry-point
group (sitemesh's own five do so in its ``pyproject.toml``)::

    [project.entry-points."sitemesh.agents"]
    sentiment = "mypkg.agents:SentimentAgent"

An agent can also be named by import path, ``mypkg.agents:SentimentAgent``
(``sitemesh worker --agent ...``). Both go through :meth:`Registry.load`.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Final

import msgspec

from ..bus import AGENT_ENTRY_POINTS
from ..errors import AgentError
from ..schemas import TASK_KINDS, FinalAnswer, Task
from ._base import Agent

ENTRY_POINT_GROUP: Final = AGENT_ENTRY_POINTS
"""The entry-point group agents register in (``sitemesh.agents``)."""

_ROLE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")

RESERVED_ROLES: Final = frozenset(
    {"router", "recorder", "relay", "synthesiser", "client", "operator", "admin"}
)
"""Names of the runtime's own services and identities; no agent may take them."""


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """One registered role.

    Attributes:
        role: the role name.
        cls: the :class:`Agent` subclass.
        origin: where it came from (``sitemesh 0.1.0, entry point retriever`` or
            ``import path mypkg.agents:Sentiment``).
    """

    role: str
    cls: type[Agent]
    origin: str

    @property
    def output(self) -> type[msgspec.Struct]:
        """The type ``handle`` returns."""
        return self.cls.output

    @property
    def accepts(self) -> tuple[type[Task], ...] | None:
        """Task types it takes, ``None`` for any."""
        return self.cls.accepts

    @property
    def zones(self) -> frozenset[str]:
        """Zones it may run in."""
        return frozenset(self.cls.zones)

    @property
    def final(self) -> bool:
        """Whether it ends a workflow (returns a :class:`~sitemesh.schemas.FinalAnswer`)."""
        return self.cls.output is FinalAnswer

    @property
    def description(self) -> str:
        return self.cls.description or (inspect.getdoc(self.cls) or "").split("\n")[0]

    def create(self) -> Agent:
        """A new instance (call :meth:`Agent.setup` before its first message)."""
        return self.cls()

    def schemas(self) -> dict[str, Any]:
        """JSON Schemas of the accepted tasks and of the output (``{"input", "output"}``)."""
        accepts = self.accepts
        inp: Any = (
            msgspec.json.schema(accepts[0] if len(accepts) == 1 else _union(accepts))
            if accepts
            else {"description": "any task kind"}
        )
        return {"input": inp, "output": msgspec.json.schema(self.output)}


def _union(types: Sequence[type[Any]]) -> Any:
    out: Any = types[0]
    for t in types[1:]:
        out = out | t
    return out


def check_agent_class(obj: object, origin: str) -> type[Agent]:
    """``obj`` if it is a well-formed agent class.

    Raises:
        AgentError: not an :class:`Agent` subclass; ``role`` missing or not a subject
            token, or reserved; ``output`` not a tagged msgspec Struct; ``accepts``
            not task types; ``zones`` not within ``{"edge", "cloud"}``.
    """
    if not (isinstance(obj, type) and issubclass(obj, Agent)):
        raise AgentError(f"{origin}: {obj!r} is not a subclass of sitemesh.agents.Agent")
    role = getattr(obj, "role", None)
    if not isinstance(role, str) or not _ROLE.match(role):
        raise AgentError(
            f"{origin}: {obj.__name__}.role = {role!r}; expected a name of [a-z][a-z0-9_]*, "
            "at most 32 characters"
        )
    if role in RESERVED_ROLES:
        raise AgentError(f"{origin}: role {role!r} is reserved for sitemesh's own services")
    out = getattr(obj, "output", None)
    if not (isinstance(out, type) and issubclass(out, msgspec.Struct)):
        raise AgentError(f"{origin}: {obj.__name__}.output must be a msgspec Struct type")
    if not isinstance(out.__struct_config__.tag, str):
        raise AgentError(
            f"{origin}: {obj.__name__}.output ({out.__name__}) needs a tag, e.g. "
            f'class {out.__name__}(msgspec.Struct, tag="{role}_result.v1")'
        )
    accepts = obj.accepts
    if accepts is not None and not all(
        isinstance(t, type) and t.__struct_config__.tag in _TASK_TAGS for t in accepts
    ):
        raise AgentError(
            f"{origin}: {obj.__name__}.accepts must be task types ({sorted(_TASK_TAGS)})"
        )
    if not set(obj.zones) <= {"edge", "cloud"} or not obj.zones:
        raise AgentError(f"{origin}: {obj.__name__}.zones must be within {{'edge', 'cloud'}}")
    return obj


_TASK_TAGS: Final = frozenset(str(t.__struct_config__.tag) for t in TASK_KINDS.values())
"""Tags of the task types an agent may accept."""


def import_agent(path: str) -> AgentSpec:
    """Load the agent class at ``module:Name``.

    Raises:
        AgentError: the path is malformed, the module does not import, the name is
            missing, or it is not a well-formed agent class.
    """
    origin = f"import path {path}"
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise AgentError(f"{origin}: expected module:Class, e.g. mypkg.agents:Sentiment")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise AgentError(f"{origin}: cannot import {module_name!r}: {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AgentError(f"{origin}: {module_name!r} has no {attr!r}") from None
    cls = check_agent_class(obj, origin)
    return AgentSpec(cls.role, cls, origin)


def _entry_points() -> Iterator[AgentSpec]:
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = f"{ep.dist.name} {ep.dist.version}, " if ep.dist is not None else ""
        origin = f"{dist}entry point {ep.name}"
        try:
            obj = ep.load()
        except Exception as exc:
            raise AgentError(f"{origin}: cannot load {ep.value!r}: {exc}") from exc
        cls = check_agent_class(obj, origin)
        if cls.role != ep.name:
            raise AgentError(
                f"{origin}: the entry point is named {ep.name!r} but the class's role is "
                f"{cls.role!r}; name the entry point after the role"
            )
        yield AgentSpec(cls.role, cls, origin)


class Registry(Mapping[str, AgentSpec]):
    """Role name -> :class:`AgentSpec`; the only list of agent roles.

    Build it with :meth:`load`; it is a read-only mapping.
    """

    def __init__(self, specs: Iterable[AgentSpec]) -> None:
        self._specs: dict[str, AgentSpec] = {}
        for spec in specs:
            seen = self._specs.get(spec.role)
            if seen is not None and seen.cls is not spec.cls:
                raise AgentError(
                    f"role {spec.role!r} is registered twice: by {seen.origin} and by {spec.origin}"
                )
            self._specs.setdefault(spec.role, spec)

    @classmethod
    def load(cls, import_paths: Sequence[str] = ()) -> Registry:
        """Every agent installed (entry points), plus those at ``import_paths``.

        Raises:
            AgentError: an entry point or import path does not load, is not an
                agent, or claims a role another one already has.
        """
        return cls([*_entry_points(), *(import_agent(p) for p in import_paths)])

    def __getitem__(self, role: str) -> AgentSpec:
        return self._specs[role]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def spec(self, role: str) -> AgentSpec:
        """The spec of ``role``.

        Raises:
            AgentError: no agent has that role; the message lists the known ones.
        """
        try:
            return self._specs[role]
        except KeyError:
            raise AgentError(
                f"unknown role {role!r}; installed: {sorted(self._specs)} (install the "
                "agent's package, or name it with --agent module:Class)"
            ) from None

    @property
    def roles(self) -> tuple[str, ...]:
        """Registered role names, sorted."""
        return tuple(sorted(self._specs))
