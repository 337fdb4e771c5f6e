"""Conditions on a task and its earlier steps' outputs: ``when`` and ``jumps[].when``.

A condition is one expression in a small, side-effect-free subset of Python's
expression syntax, parsed with :mod:`ast` and evaluated by our own walker (never
``eval``):

* names: an earlier step's name (its output, as JSON), ``task`` (the task),
  ``decision`` (the policy decision) and ``envelope``; ``true``/``false``/``null``
  are accepted for TOML writers;
* attribute access ``triage.confidence`` and index ``outputs["x"]`` / ``list[0]``;
* literals: numbers, strings, ``True``/``False``/``None``, lists and tuples;
* comparisons ``== != < <= > >= in not in`` (chains allowed), ``and``, ``or``, ``not``.

A missing value (a skipped step, an absent field) is ``None``; an ordering
comparison with ``None`` is false rather than an error, so ``triage.confidence >=
0.9`` is simply false when triage was skipped.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ..errors import WorkflowError

_NAMED_CONSTANTS: Final[dict[str, object]] = {"true": True, "false": False, "null": None}

_CONTEXT_NAMES: Final = frozenset({"task", "decision", "envelope"})
"""Names every condition may use besides earlier step names."""

_COMPARE: Final[dict[type[ast.cmpop], Callable[[Any, Any], bool]]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: b is not None and a in b,
    ast.NotIn: lambda a, b: b is None or a not in b,
}

_MAX_LENGTH: Final = 512
"""Longest condition accepted, in characters (as ``sitemesh.schemas.Condition``)."""


@dataclass(frozen=True, slots=True)
class Condition:
    """A parsed, checked condition.

    Attributes:
        text: the source text.
        names: the names it reads (step names and context names).
        fields: ``(name, first attribute)`` pairs it reads, for field checks.
    """

    text: str
    names: frozenset[str]
    fields: frozenset[tuple[str, str]]
    _tree: ast.expr

    def evaluate(self, scope: Mapping[str, Any]) -> bool:
        """Whether the condition holds in ``scope`` (name -> JSON-like value).

        A name missing from ``scope`` is ``None``.
        """
        return bool(_eval(self._tree, scope))


def parse_condition(text: str, *, known: Collection[str], where: str) -> Condition:
    """Parse and check ``text``.

    Args:
        text: the condition.
        known: the step names it may read (steps that run before it is evaluated).
        where: ``workflow 'x' step 'y' when`` — named in every error.

    Returns:
        The condition, ready to evaluate.

    Raises:
        WorkflowError: a syntax error, a construct outside the grammar above, or a
            name that is neither an earlier step nor ``task``/``decision``/``envelope``.
    """
    if len(text) > _MAX_LENGTH:
        raise WorkflowError(f"{where}: condition longer than {_MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        raise WorkflowError(f"{where}: {text!r} is not a valid condition: {exc.msg}") from exc
    names: set[str] = set()
    fields: set[tuple[str, str]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if node.id in _NAMED_CONSTANTS:
                continue
            if node.id not in known and node.id not in _CONTEXT_NAMES:
                allowed = sorted({*known, *_CONTEXT_NAMES})
                raise WorkflowError(
                    f"{where}: {text!r} reads {node.id!r}, which is not an earlier step; "
                    f"expected one of {allowed}"
                )
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name):
                fields.add((node.value.id, node.attr))
        elif not isinstance(node, _ALLOWED):
            raise WorkflowError(
                f"{where}: {text!r} uses {type(node).__name__}, which conditions do not "
                "allow (names, attributes, literals, comparisons, and/or/not)"
            )
    return Condition(text, frozenset(names), frozenset(fields), tree)


_ALLOWED: Final = (
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.UnaryOp,
    ast.Not,
    ast.USub,
    ast.Compare,
    *_COMPARE,
    ast.Attribute,
    ast.Subscript,
    ast.Constant,
    ast.List,
    ast.Tuple,
    ast.Load,
)


def _eval(node: ast.expr, scope: Mapping[str, Any]) -> Any:
    match node:
        case ast.Constant(value=value):
            return value
        case ast.Name(id=name):
            if name in _NAMED_CONSTANTS:
                return _NAMED_CONSTANTS[name]
            return scope.get(name)
        case ast.Attribute(value=inner, attr=attr):
            base = _eval(inner, scope)
            return base.get(attr) if isinstance(base, Mapping) else None
        case ast.Subscript(value=inner, slice=index):
            base, key = _eval(inner, scope), _eval(index, scope)
            if isinstance(base, Mapping):
                return base.get(key)
            if isinstance(base, list) and isinstance(key, int) and -len(base) <= key < len(base):
                return base[key]
            return None
        case ast.List(elts=elts) | ast.Tuple(elts=elts):
            return [_eval(e, scope) for e in elts]
        case ast.UnaryOp(op=ast.Not(), operand=operand):
            return not _eval(operand, scope)
        case ast.UnaryOp(op=ast.USub(), operand=operand):
            value = _eval(operand, scope)
            return -value if isinstance(value, int | float) else None
        case ast.BoolOp(op=ast.And(), values=values):
            return all(_eval(v, scope) for v in values)
        case ast.BoolOp(op=ast.Or(), values=values):
            return any(_eval(v, scope) for v in values)
        case ast.Compare(left=left, ops=ops, comparators=comparators):
            a = _eval(left, scope)
            for op, right in zip(ops, comparators, strict=True):
                b = _eval(right, scope)
                if not _compare(op, a, b):
                    return False
                a = b
            return True
    raise WorkflowError(f"cannot evaluate {ast.dump(node)}")  # parse_condition prevents it


def _compare(op: ast.cmpop, a: Any, b: Any) -> bool:
    fn = _COMPARE[type(op)]
    try:
        return fn(a, b)
    except TypeError:  # None < 0.9, "a" < 1: false, not an error
        return False
