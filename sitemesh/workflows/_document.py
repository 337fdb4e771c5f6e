"""The workflows document: TOML, validated, versioned by content hash.

```toml
version = "2026-12-01.1"          # your label; the version hash is computed

[[workflow]]
name = "support"
kinds = ["support_ticket"]

  [[workflow.step]]
  name = "retrieve"
  role = "retriever"

  [[workflow.step]]
  name = "decide"
  role = "escalation"
```

Each task kind is served by at most one workflow. Steps run in order; a step's
``when`` skips it when false; ``jumps`` (``[{ when = "...", to = "decide" }]``)
continue at a *later* step, so a workflow can never loop. The structural checks
here need nothing but the text; :func:`check_workflows` adds the checks that need
the agent registry (roles, zones, output fields) and the policy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Annotated, Any, Final, Protocol

import msgspec

from ..bus import load_toml
from ..errors import WorkflowError
from ..schemas import TASK_KINDS, FinalAnswer, Jump, WorkflowSpec, WorkflowStep, Zone
from ._conditions import Condition, parse_condition

BUNDLED_WORKFLOWS: Final = "default.toml"
"""The packaged default workflows (today's pipeline), seeded into KV when empty."""


class _StepIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    role: str
    zone: Zone = "edge"
    when: str | None = None
    jumps: list[Jump] = []


class _WorkflowIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    kinds: Annotated[list[str], msgspec.Meta(min_length=1)]
    description: str = ""
    step: Annotated[list[dict[str, Any]], msgspec.Meta(min_length=1)]


class _Header(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    version: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    workflow: Annotated[list[dict[str, Any]], msgspec.Meta(min_length=1)]


class Workflows:
    """A validated workflows document.

    Attributes:
        workflows: the workflows, each with :attr:`WorkflowSpec.version` set.
        label: the document's own ``version`` string.
        version: 16 hex digits of SHA-256 over the canonical JSON of the content
            (comments and formatting do not change it).
        source: where it was read from.
    """

    def __init__(self, workflows: Iterable[WorkflowSpec], *, label: str, source: str) -> None:
        specs = tuple(workflows)
        canonical = msgspec.json.encode({"version": label, "workflow": specs}, order="sorted")
        self.version: str = hashlib.sha256(canonical).hexdigest()[:16]
        self.label = label
        self.source = source
        self.workflows: tuple[WorkflowSpec, ...] = tuple(
            msgspec.structs.replace(w, version=self.version) for w in specs
        )
        self._by_kind = {kind: w for w in self.workflows for kind in w.kinds}

    def __repr__(self) -> str:
        names = ", ".join(w.name for w in self.workflows)
        return f"Workflows(label={self.label!r}, version={self.version!r}, workflows=[{names}])"

    def for_kind(self, kind: str) -> WorkflowSpec | None:
        """The workflow serving task kind ``kind``, or ``None``."""
        return self._by_kind.get(kind)

    def get(self, name: str) -> WorkflowSpec | None:
        """The workflow called ``name``, or ``None``."""
        return next((w for w in self.workflows if w.name == name), None)

    @property
    def roles(self) -> tuple[str, ...]:
        """Every role a step names, in first-use order."""
        return tuple(dict.fromkeys(s.role for w in self.workflows for s in w.steps))

    @classmethod
    def from_toml(cls, text: str, *, source: str = "<workflows>") -> Workflows:
        """Parse a workflows document and run the structural checks.

        Raises:
            WorkflowError: invalid TOML or a schema violation. The message names the
                workflow, the step and the field, e.g. ``workflow 'support' step[2]
                ('plan'): Expected `str`, got `int` - at `$.role```.
        """
        header = load_toml(text, _Header, source=source, error=WorkflowError)
        specs: list[WorkflowSpec] = []
        served: dict[str, str] = {}
        for index, raw in enumerate(header.workflow):
            spec = _workflow(source, index, raw)
            if any(w.name == spec.name for w in specs):
                raise WorkflowError(
                    f"{source}: workflow {spec.name!r}: duplicate name - at `$.name`"
                )
            for kind in spec.kinds:
                if kind in served:
                    raise WorkflowError(
                        f"{source}: workflow {spec.name!r}: kind {kind!r} is already served by "
                        f"workflow {served[kind]!r} - at `$.kinds`"
                    )
                served[kind] = spec.name
            specs.append(spec)
        return cls(specs, label=header.version, source=source)

    @classmethod
    def load(cls, path: str | None = None) -> Workflows:
        """The bundled default workflows, or the document at ``path``.

        Raises:
            WorkflowError: the file cannot be read or is invalid.
        """
        if path is None:
            return cls.from_toml(bundled_text(), source=BUNDLED_WORKFLOWS)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise WorkflowError(f"{path}: cannot read workflows file: {exc}") from exc
        return cls.from_toml(text, source=path)


def bundled_text() -> str:
    """The text of the packaged ``default.toml``."""
    ref = resources.files(__package__ or "sitemesh.workflows") / BUNDLED_WORKFLOWS
    return ref.read_text(encoding="utf-8")


def _workflow(source: str, index: int, raw: Mapping[str, Any]) -> WorkflowSpec:
    label = f"{source}: workflow[{index}] ({raw.get('name', '?')!r})"
    try:
        w = msgspec.convert(raw, _WorkflowIn)
    except msgspec.ValidationError as exc:
        raise WorkflowError(f"{label}: {exc}") from exc
    where = f"{source}: workflow {w.name!r}"
    steps: list[WorkflowStep] = []
    for i, raw_step in enumerate(w.step):
        try:
            step = msgspec.convert(raw_step, WorkflowStep)
        except msgspec.ValidationError as exc:
            raise WorkflowError(
                f"{where} step[{i}] ({raw_step.get('name', '?')!r}): {exc}"
            ) from exc
        steps.append(step)
    try:
        spec = msgspec.convert(
            {
                "name": w.name,
                "kinds": w.kinds,
                "description": w.description,
                "steps": msgspec.to_builtins(steps),
            },
            WorkflowSpec,
        )
    except msgspec.ValidationError as exc:
        raise WorkflowError(f"{where}: {exc}") from exc
    for kind in spec.kinds:
        if kind not in TASK_KINDS:
            raise WorkflowError(
                f"{where}: unknown task kind {kind!r}; expected one of {sorted(TASK_KINDS)}"
                " - at `$.kinds`"
            )
    names = [s.name for s in spec.steps]
    for i, step in enumerate(spec.steps):
        at = f"{where} step {step.name!r}"
        if step.name in names[:i]:
            raise WorkflowError(f"{at}: duplicate step name - at `$.name`")
        if step.when is not None:
            parse_condition(step.when, known=names[:i], where=f"{at} when")
        for j, jump in enumerate(step.jumps):
            if jump.to not in names:
                raise WorkflowError(
                    f"{at} jumps[{j}]: unknown step {jump.to!r}; expected one of {names[i + 1 :]}"
                )
            if names.index(jump.to) <= i:
                raise WorkflowError(
                    f"{at} jumps[{j}]: jumping to {jump.to!r} would make a cycle; "
                    f"a jump must go to a later step ({names[i + 1 :]})"
                )
            parse_condition(jump.when, known=names[: i + 1], where=f"{at} jumps[{j}] when")
    if spec.steps[-1].when is not None:
        raise WorkflowError(
            f"{where} step {spec.steps[-1].name!r}: the last step cannot have `when` "
            "(a task must always reach a final answer) - at `$.when`"
        )
    return spec


class RoleInfo(Protocol):
    """What the checks need to know of a role (an ``AgentSpec`` provides it)."""

    @property
    def output(self) -> type[msgspec.Struct]: ...

    @property
    def zones(self) -> frozenset[str]: ...

    @property
    def accepts(self) -> tuple[type[msgspec.Struct], ...] | None: ...


class PolicyView(Protocol):
    """What the checks need to know of the policy (a ``Policy`` provides it)."""

    def may_leave_site(self, kind: str) -> bool: ...


def check_workflows(
    doc: Workflows, roles: Mapping[str, RoleInfo], policy: PolicyView | None = None
) -> None:
    """The checks that need the agent registry and the policy.

    Args:
        doc: a structurally valid document.
        roles: role name -> what it produces, where it runs, which tasks it takes.
        policy: the policy in force; ``None`` skips the zone-against-policy check.

    Raises:
        WorkflowError: a step names an unknown role, a zone its role does not run
            in, or a cloud zone the policy never allows for the workflow's kinds; a
            condition reads a field the step's output does not have; the last step
            does not produce a final answer; a role does not take the workflow's kinds.
    """
    for w in doc.workflows:
        where = f"{doc.source}: workflow {w.name!r}"
        outputs: dict[str, type[msgspec.Struct]] = {}
        for i, step in enumerate(w.steps):
            at = f"{where} step {step.name!r}"
            info = roles.get(step.role)
            if info is None:
                raise WorkflowError(
                    f"{at}: unknown role {step.role!r}; installed roles: {sorted(roles)} "
                    "(install the agent's package, or pass --agent module:Class) - at `$.role`"
                )
            if step.zone not in info.zones:
                raise WorkflowError(
                    f"{at}: role {step.role!r} runs only in {sorted(info.zones)}, "
                    f"not in zone {step.zone!r} - at `$.zone`"
                )
            if step.zone == "cloud" and policy is not None:
                blocked = [k for k in w.kinds if not policy.may_leave_site(k)]
                if blocked == list(w.kinds):
                    raise WorkflowError(
                        f"{at}: zone 'cloud' is forbidden: the policy keeps every "
                        f"{'/'.join(blocked)} task on site - at `$.zone`"
                    )
            if info.accepts is not None:
                names = {t.__struct_config__.tag for t in info.accepts}
                for kind in w.kinds:
                    if TASK_KINDS[kind].__struct_config__.tag not in names:
                        raise WorkflowError(
                            f"{at}: role {step.role!r} takes {sorted(map(str, names))}, "
                            f"not kind {kind!r} - at `$.role`"
                        )
            final = info.output is FinalAnswer
            if i == len(w.steps) - 1 and not final:
                raise WorkflowError(
                    f"{at}: the last step must produce a final answer, but role "
                    f"{step.role!r} produces {info.output.__name__} - at `$.role`"
                )
            if step.when is not None:
                cond = parse_condition(step.when, known=list(outputs), where=f"{at} when")
                _check_fields(cond, outputs, f"{at} when")
            after = {**outputs, step.name: info.output}
            for j, jump in enumerate(step.jumps):
                label = f"{at} jumps[{j}] when"
                _check_fields(
                    parse_condition(jump.when, known=list(after), where=label), after, label
                )
            outputs[step.name] = info.output


def _check_fields(cond: Condition, outputs: Mapping[str, type[msgspec.Struct]], where: str) -> None:
    for name, attr in cond.fields:
        cls = outputs.get(name)
        if cls is None:
            continue  # task / decision / envelope: checked at run time (None if absent)
        fields = {f.encode_name for f in msgspec.structs.fields(cls)}
        if attr not in fields:
            raise WorkflowError(
                f"{where}: {cond.text!r} reads {name}.{attr}, but {cls.__name__} has no "
                f"field {attr!r}; fields: {sorted(fields)}"
            )
