"""An evaluator for the small part of HCL that ``examples/aws/terraform`` uses.

Terraform is not on every machine the tests run on, so the module's variables and locals are
evaluated here: literals, string templates with ``${...}``, ``var.``/``local.`` references,
tuple and object constructors, ``for`` expressions, conditionals, comparisons, ``&&``,
``||``, ``!`` and the functions in ``_FUNCTIONS``. Anything else raises :class:`HCLError`,
so a change to the module cannot slip past the tests; where terraform is installed,
``tests/test_aws_templates.py`` checks this evaluator against ``terraform console``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["HCLError", "Module", "evaluate_module"]


class HCLError(Exception):
    """The text is outside the supported subset, or evaluating it failed."""


Scope = Mapping[str, Any]
Node = Callable[[Scope], Any]


@dataclass
class Block:
    type: str
    labels: list[str]
    attributes: dict[str, Node] = field(default_factory=dict)
    blocks: list[Block] = field(default_factory=list)


def _coalesce(*values: Any) -> Any:
    for value in values:
        if value is not None and value != "":
            return value
    raise HCLError("coalesce: no non-null, non-empty argument")


def _regex(pattern: str, text: str) -> Any:
    match = re.search(pattern, text)
    if match is None:
        raise HCLError(f"regex: {pattern!r} does not match {text!r}")
    return match.group(0)


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "alltrue": all,
    "coalesce": _coalesce,
    "concat": lambda *lists: [item for items in lists for item in items],
    "contains": lambda items, value: value in items,
    "distinct": lambda items: list(dict.fromkeys(items)),
    "join": lambda separator, items: separator.join(items),
    "jsonencode": lambda value: json.dumps(value, separators=(",", ":"), sort_keys=True),
    "length": len,
    "regex": _regex,
    "regexall": lambda pattern, text: [m.group(0) for m in re.finditer(pattern, text)],
    "trimprefix": lambda text, prefix: text[len(prefix) :] if text.startswith(prefix) else text,
}


def _to_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    raise HCLError(f"cannot interpolate {value!r} into a string")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    # -- characters ----------------------------------------------------------------------

    def fail(self, what: str) -> HCLError:
        line = self.text.count("\n", 0, self.pos) + 1
        return HCLError(f"line {line}: {what} (at {self.text[self.pos : self.pos + 20]!r})")

    def skip(self) -> None:
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char in " \t\r\n":
                self.pos += 1
            elif char == "#" or self.text.startswith("//", self.pos):
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            elif self.text.startswith("/*", self.pos):
                end = self.text.find("*/", self.pos)
                if end < 0:
                    raise self.fail("unterminated comment")
                self.pos = end + 2
            else:
                return

    def peek(self, token: str) -> bool:
        self.skip()
        if not self.text.startswith(token, self.pos):
            return False
        if token[-1].isalnum():  # a keyword, not the start of a longer name
            after = self.text[self.pos + len(token) : self.pos + len(token) + 1]
            return not (after.isalnum() or after in "_-")
        return True

    def take(self, token: str) -> bool:
        if self.peek(token):
            self.pos += len(token)
            return True
        return False

    def expect(self, token: str) -> None:
        if not self.take(token):
            raise self.fail(f"expected {token!r}")

    def identifier(self) -> str:
        self.skip()
        match = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*").match(self.text, self.pos)
        if match is None:
            raise self.fail("expected a name")
        self.pos = match.end()
        return match.group(0)

    # -- structure -----------------------------------------------------------------------

    def body(self, closing: str | None) -> Block:
        block = Block("", [])
        while True:
            self.skip()
            if closing is None and self.pos >= len(self.text):
                return block
            if closing is not None and self.take(closing):
                return block
            name = self.identifier()
            if self.peek("=") and not self.peek("=="):
                self.expect("=")
                block.attributes[name] = self.expression()
                continue
            labels = []
            while self.peek('"'):
                self.pos += 1
                labels.append(self.literal_string())
            self.expect("{")
            inner = self.body("}")
            block.blocks.append(Block(name, labels, inner.attributes, inner.blocks))

    def literal_string(self) -> str:
        parts = self.template_parts()
        if any(not isinstance(p, str) for p in parts):
            raise self.fail("a block label cannot interpolate")
        return "".join(str(p) for p in parts)

    # -- expressions ---------------------------------------------------------------------

    def expression(self) -> Node:
        condition = self.binary(0)
        if not self.take("?"):
            return condition
        when_true = self.expression()
        self.expect(":")
        when_false = self.expression()
        return lambda s: when_true(s) if condition(s) else when_false(s)

    _LEVELS: tuple[tuple[str, ...], ...] = (("||",), ("&&",), ("==", "!=", "<=", ">=", "<", ">"))

    def binary(self, level: int) -> Node:
        if level == len(self._LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while True:
            operator = next((op for op in self._LEVELS[level] if self.peek(op)), None)
            if operator is None:
                return left
            self.pos += len(operator)
            right = self.binary(level + 1)
            left = self._combine(operator, left, right)

    @staticmethod
    def _combine(operator: str, left: Node, right: Node) -> Node:
        operations: dict[str, Callable[[Any, Any], Any]] = {
            "||": lambda a, b: a or b,
            "&&": lambda a, b: a and b,
            "==": lambda a, b: a == b,
            "!=": lambda a, b: a != b,
            "<=": lambda a, b: a <= b,
            ">=": lambda a, b: a >= b,
            "<": lambda a, b: a < b,
            ">": lambda a, b: a > b,
        }
        operation = operations[operator]
        return lambda s: operation(left(s), right(s))

    def unary(self) -> Node:
        if self.take("!"):
            operand = self.unary()
            return lambda s: not operand(s)
        return self.postfix(self.primary())

    def postfix(self, node: Node) -> Node:
        while True:
            if self.take("."):
                name = self.identifier()
                node = self._attribute(node, name)
            elif self.peek("[") and not self.peek("[for"):
                self.expect("[")
                index = self.expression()
                self.expect("]")
                node = self._index(node, index)
            else:
                return node

    @staticmethod
    def _attribute(node: Node, name: str) -> Node:
        def get(s: Scope) -> Any:
            value = node(s)
            try:
                return value[name]
            except (KeyError, TypeError):
                raise HCLError(f"no attribute {name!r}") from None

        return get

    @staticmethod
    def _index(node: Node, index: Node) -> Node:
        return lambda s: node(s)[index(s)]

    def primary(self) -> Node:  # noqa: PLR0911 - one return per kind of term
        self.skip()
        char = self.text[self.pos : self.pos + 1]
        if char == '"':
            self.pos += 1
            return self.template()
        if char.isdigit():
            match = re.compile(r"\d+(\.\d+)?").match(self.text, self.pos)
            assert match is not None
            self.pos = match.end()
            number = float(match.group(0)) if match.group(1) else int(match.group(0))
            return lambda s: number
        if self.take("("):
            inner = self.expression()
            self.expect(")")
            return inner
        if self.take("["):
            return self.for_tuple() if self.take("for") else self.tuple()
        if self.take("{"):
            if self.peek("for"):
                raise self.fail("object for expressions are not supported")
            return self.object()
        name = self.identifier()
        constants = {"true": True, "false": False, "null": None}
        if name in constants:
            constant = constants[name]
            return lambda s: constant
        if self.take("("):
            return self.call(name)
        return lambda s: self._lookup(s, name)

    @staticmethod
    def _lookup(scope: Scope, name: str) -> Any:
        if name not in scope:
            raise HCLError(f"unknown name {name!r}")
        return scope[name]

    def call(self, name: str) -> Node:
        arguments: list[Node] = []
        while not self.take(")"):
            arguments.append(self.expression())
            if not self.take(","):
                self.expect(")")
                break
        if name == "can":  # evaluates its argument only to see whether that fails
            (argument,) = arguments

            def can(s: Scope) -> bool:
                try:
                    argument(s)
                except (HCLError, re.error, TypeError, ValueError):
                    return False
                return True

            return can

        def invoke(s: Scope) -> Any:
            function = _FUNCTIONS.get(name)
            if function is None:
                raise HCLError(f"function {name}() is not supported")
            return function(*(a(s) for a in arguments))

        return invoke

    def tuple(self) -> Node:
        items: list[Node] = []
        while not self.take("]"):
            items.append(self.expression())
            if not self.take(","):
                self.expect("]")
                break
        return lambda s: [item(s) for item in items]

    def for_tuple(self) -> Node:
        first = self.identifier()
        second = self.identifier() if self.take(",") else None
        self.expect("in")
        collection = self.expression()
        self.expect(":")
        value = self.expression()
        condition = self.expression() if self.take("if") else None
        self.expect("]")

        def evaluate(s: Scope) -> list[Any]:
            items = collection(s)
            pairs: Iterable[tuple[Any, Any]] = (
                items.items() if isinstance(items, Mapping) else enumerate(items)
            )
            result = []
            for key, item in pairs:
                inner = {**s, **({first: key, second: item} if second else {first: item})}
                if condition is None or condition(inner):
                    result.append(value(inner))
            return result

        return evaluate

    def object(self) -> Node:
        items: list[tuple[Node, Node]] = []
        while not self.take("}"):
            self.skip()
            if self.take("("):
                key = self.expression()
                self.expect(")")
            elif self.take('"'):
                key = self.template()
            else:
                key = self._literal(self.identifier())  # a bare name is a literal key
            if not (self.take("=") or self.take(":")):
                raise self.fail("expected '=' or ':' in an object")
            items.append((key, self.expression()))
            self.take(",")
        return lambda s: {_to_string(k(s)): v(s) for k, v in items}

    @staticmethod
    def _literal(value: str) -> Node:
        return lambda s: value

    def template(self) -> Node:
        parts = self.template_parts()
        if len(parts) == 1 and not isinstance(parts[0], str):
            return parts[0]  # "${x}" is x itself, not its string form
        return lambda s: "".join(p if isinstance(p, str) else _to_string(p(s)) for p in parts)

    def template_parts(self) -> list[str | Node]:
        """Read a quoted template after its opening quote, up to and past the closing one."""
        parts: list[str | Node] = []
        literal: list[str] = []
        escapes = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r"}
        while True:
            if self.pos >= len(self.text):
                raise self.fail("unterminated string")
            char = self.text[self.pos]
            if char == '"':
                self.pos += 1
                break
            if char == "\\":
                escaped = self.text[self.pos + 1 : self.pos + 2]
                if escaped not in escapes:
                    raise self.fail(f"unsupported escape \\{escaped}")
                literal.append(escapes[escaped])
                self.pos += 2
            elif self.text.startswith("$${", self.pos) or self.text.startswith("%%{", self.pos):
                literal.append(self.text[self.pos + 1 : self.pos + 3])
                self.pos += 3
            elif self.text.startswith("%{", self.pos):
                raise self.fail("template directives are not supported")
            elif self.text.startswith("${", self.pos):
                self.pos += 2
                if literal:
                    parts.append("".join(literal))
                    literal = []
                parts.append(self.expression())
                self.expect("}")
            else:
                literal.append(char)
                self.pos += 1
        if literal or not parts:
            parts.append("".join(literal))
        return parts


class _Locals(Mapping[str, Any]):
    """``local.*``, each evaluated on first use."""

    def __init__(self, nodes: dict[str, Node], given: Mapping[str, Any]) -> None:
        self._nodes = nodes
        self._values: dict[str, Any] = dict(given)
        self._busy: set[str] = set()
        self.scope: Scope = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._values:
            if name not in self._nodes:
                raise KeyError(name)
            if name in self._busy:
                raise HCLError(f"local.{name} refers to itself")
            self._busy.add(name)
            self._values[name] = self._nodes[name](self.scope)
        return self._values[name]

    def __iter__(self) -> Any:
        return iter({*self._nodes, *self._values})

    def __len__(self) -> int:
        return len({*self._nodes, *self._values})


@dataclass
class Module:
    """A module's blocks, with its variables set and its locals ready to evaluate."""

    blocks: list[Block]
    variables: dict[str, Any]
    locals: Mapping[str, Any]

    def block(self, kind: str, *labels: str) -> Block:
        for block in self.blocks:
            if block.type == kind and block.labels == list(labels):
                return block
        raise HCLError(f"no {kind} block {' '.join(labels)}")

    def evaluate(self, node: Node) -> Any:
        return node({"var": self.variables, "local": self.locals})


def evaluate_module(  # noqa: PLR0912 - terraform's steps, in order
    files: Iterable[Path], variables: Mapping[str, Any], locals: Mapping[str, Any] | None = None
) -> Module:
    """Evaluate ``files`` as terraform would with ``-var`` values ``variables``.

    ``locals`` supplies or replaces locals that need resources. Variable defaults
    apply and every ``validation`` block is checked: a failing one raises :class:`HCLError`
    with its error message, as ``terraform plan`` would refuse to run.
    """
    locals = locals or {}
    blocks: list[Block] = []
    for path in files:
        blocks += _Parser(path.read_text()).body(None).blocks
    local_nodes: dict[str, Node] = {}
    for block in blocks:
        if block.type == "locals":
            for name, node in block.attributes.items():
                if name in local_nodes and name not in locals:
                    raise HCLError(f"local.{name} is defined twice")
                local_nodes[name] = node
    values: dict[str, Any] = {}
    declared = {b.labels[0]: b for b in blocks if b.type == "variable"}
    unknown = set(variables) - set(declared)
    if unknown:
        raise HCLError(f"undeclared variables: {sorted(unknown)}")
    for name, block in declared.items():
        if name in variables:
            values[name] = variables[name]
        elif "default" in block.attributes:
            values[name] = block.attributes["default"]({})
        else:
            raise HCLError(f"no value for the required variable {name!r}")
    module_locals = _Locals(local_nodes, dict(locals))
    scope = {"var": values, "local": module_locals}
    module_locals.scope = scope
    for name, block in declared.items():
        for validation in (b for b in block.blocks if b.type == "validation"):
            if not validation.attributes["condition"](scope):
                message = validation.attributes["error_message"](scope)
                raise HCLError(f"Invalid value for variable {name}: {message}")
    return Module(blocks, values, module_locals)
