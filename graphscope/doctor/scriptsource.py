"""Reading the user's script for the doctor: the statement at a line and what it does there.

Locations are `file.py:LINE` strings, as the capture writes them. Everything here is best
effort: code that does not parse, or a line that holds no statement, gives no answer rather
than an error, since the script already ran under Python and the doctor only reads it.
"""

from __future__ import annotations

import ast
import copy
import functools
import re
from typing import Iterator, NamedTuple

_COMPOUND_BODIES = ("body", "orelse", "finalbody", "handlers", "cases")
_INPLACE_METHOD = re.compile(r"^[a-z][a-z0-9_]*[a-z0-9]_$")


def split_location(location: str | None) -> tuple[str, int] | None:
    """`train.py:12` -> ("train.py", 12); None when there is no line number."""
    if not location:
        return None
    path, _, line = location.rpartition(":")
    return (path, int(line)) if path and line.isdigit() else None


@functools.lru_cache(maxsize=64)
def parse(text: str) -> ast.Module | None:
    """The syntax tree of a file's text, or None when it does not parse."""
    try:
        return ast.parse(text)
    except (SyntaxError, ValueError):
        return None


def _inner_statements(node: ast.AST) -> Iterator[ast.stmt]:
    """The statements directly inside a compound statement (or a module), handlers' bodies included."""
    for name in _COMPOUND_BODIES:
        for child in getattr(node, name, ()):
            if isinstance(child, ast.stmt):
                yield child
            else:
                yield from child.body


def statement_at(tree: ast.Module, line: int) -> ast.stmt | None:
    """The innermost statement spanning `line` (for `if x:` on that line, the `if` itself)."""
    found, children = None, list(_inner_statements(tree))
    while True:
        spanning = [s for s in children if s.lineno <= line <= (s.end_lineno or s.lineno)]
        if not spanning:
            return found
        found = spanning[-1]
        children = list(_inner_statements(found))


def own_nodes(statement: ast.stmt) -> Iterator[ast.AST]:
    """The expression nodes of a statement itself: a compound statement's header, not its body."""
    if not any(hasattr(statement, name) for name in _COMPOUND_BODIES):
        yield from ast.walk(statement)
        return
    for name, value in ast.iter_fields(statement):
        if name in _COMPOUND_BODIES or name == "decorator_list":
            continue
        for child in value if isinstance(value, list) else [value]:
            if isinstance(child, ast.AST):
                yield from ast.walk(child)


def text(node: ast.AST) -> str:
    """The source text of an expression, normalised (`w .grad` -> `w.grad`)."""
    return ast.unparse(node)


def assigned_names(statement: ast.stmt) -> list[str]:
    """What an assignment binds: `h = cell(x, h)` -> ["h"]; `a, b = f()` -> ["a", "b"]."""
    if isinstance(statement, ast.Assign):
        targets = statement.targets
    elif isinstance(statement, (ast.AugAssign, ast.AnnAssign)):
        targets = [statement.target]
    else:
        return []
    names = []
    for target in targets:
        parts = target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]
        names += [text(p) for p in parts if isinstance(p, (ast.Name, ast.Attribute))]
    return names


def appended_to(statement: ast.stmt) -> str | None:
    """The container a statement adds to: `model.saved_actions.append(SavedAction(...))` ->
    "model.saved_actions" (append, extend or insert called as the statement itself)."""
    call = statement.value if isinstance(statement, ast.Expr) else None
    if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
            and call.func.attr in ("append", "extend", "insert")
            and isinstance(call.func.value, (ast.Name, ast.Attribute))):
        return text(call.func.value)
    return None


def grad_reads(statement: ast.stmt) -> list[str]:
    """The tensors whose `.grad` the statement reads: `w = w - lr * w.grad` -> ["w"]."""
    found = [
        text(node.value) for node in own_nodes(statement)
        if isinstance(node, ast.Attribute) and node.attr == "grad" and isinstance(node.ctx, ast.Load)
    ]
    return list(dict.fromkeys(found))


def _changed_base(target: ast.expr) -> str | None:
    """The tensor an in-place write goes to: `w` for `w`, `w[0]` and `w[0][1]`."""
    while isinstance(target, ast.Subscript):
        target = target.value
    return text(target) if isinstance(target, (ast.Name, ast.Attribute)) else None


def inplace_changes(statement: ast.stmt) -> list[str]:
    """Tensors the statement changes in place: `w -= g`, `w[0] = 1`, `w.add_(1)` -> ["w"]."""
    found = []
    if isinstance(statement, ast.AugAssign):
        found.append(_changed_base(statement.target))
    if isinstance(statement, ast.Assign):
        found += [_changed_base(t.value) for t in statement.targets if isinstance(t, ast.Subscript)]
    for node in own_nodes(statement):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and _INPLACE_METHOD.match(node.func.attr)):
            found.append(_changed_base(node.func.value))
    return list(dict.fromkeys(name for name in found if name))


def inplace_lines(tree: ast.Module, names: set[str], after: int, until: int | None = None) -> list[int]:
    """Lines after `after` (up to `until`) whose statement changes one of `names` in place."""
    lines = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.stmt) or node.lineno <= after or (until is not None and node.lineno > until):
            continue
        if any(hasattr(node, name) for name in _COMPOUND_BODIES):
            continue
        if names & set(inplace_changes(node)):
            lines.add(node.lineno)
    return sorted(lines)


def _no_grad_blocks(tree: ast.Module) -> list[tuple[int, int]]:
    """The line spans of `with torch.no_grad():` (or `no_grad()`, `inference_mode()`) blocks."""
    spans = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.With, ast.AsyncWith)) and any(
                "no_grad" in text(item.context_expr) or "inference_mode" in text(item.context_expr)
                for item in node.items):
            spans.append((node.lineno, node.end_lineno or node.lineno))
    return spans


def rebinding_line(tree: ast.Module, name: str, before: int) -> int | None:
    """The last line before `before` that rebinds `name` to a value computed from `name` itself
    (`b = b - lr * b.grad`) outside a no_grad block: an update autograd records."""
    quiet = _no_grad_blocks(tree)
    found = None
    for node in ast.walk(tree):
        if (isinstance(node, ast.Assign) and node.lineno < before and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == name
                and any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(node.value))
                and not any(start <= node.lineno <= end for start, end in quiet)):
            found = max(found or 0, node.lineno)
    return found


class TruthTest(NamedTuple):
    """An expression Python tests for truth (`if w.grad:`), and its line."""

    line: int
    expression: ast.expr


def _tested(expression: ast.expr) -> Iterator[ast.expr]:
    """The operands whose truth value a test takes: through `not`, `and` and `or`."""
    if isinstance(expression, ast.UnaryOp) and isinstance(expression.op, ast.Not):
        yield from _tested(expression.operand)
    elif isinstance(expression, ast.BoolOp):
        for value in expression.values:
            yield from _tested(value)
    else:
        yield expression


def truth_tests(tree: ast.Module) -> list[TruthTest]:
    """Every plain name or attribute whose truth value the code tests, in line order."""
    tests = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.If, ast.While, ast.IfExp, ast.Assert)):
            roots = [node.test]
        elif isinstance(node, (ast.BoolOp, ast.UnaryOp)):
            roots = [node] if not isinstance(node, ast.UnaryOp) or isinstance(node.op, ast.Not) else []
        else:
            continue
        for root in roots:
            tests += [TruthTest(e.lineno, e) for e in _tested(root) if isinstance(e, (ast.Name, ast.Attribute))]
    unique = {(t.line, t.expression.col_offset): t for t in tests}
    return [unique[key] for key in sorted(unique)]


def backward_lines(tree: ast.Module) -> list[int]:
    """Lines that call `x.backward(...)` or `torch.autograd.backward(...)`."""
    return sorted({
        node.lineno for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "backward"
    })


def _backward_receivers(loop: ast.stmt) -> set[str]:
    """Names whose `.backward()` the loop calls: `loss` for `loss.backward()`."""
    return {
        node.func.value.id for node in ast.walk(loop)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        and node.func.attr == "backward" and isinstance(node.func.value, ast.Name)
    }


class Accumulation(NamedTuple):
    """`total += loss` or `losses.append(loss)` in a loop that calls `loss.backward()`, or a
    running value made of the tensor (`avg = 0.9 * avg + 0.1 * loss`), then with the
    statement that keeps a number instead (`fixed`)."""

    line: int
    holder: str
    tensor: str
    appends: bool
    fixed: str = ""


_ARITHMETIC = (ast.Add, ast.Sub, ast.Mult, ast.Div)


def _operands(expression: ast.expr) -> list[ast.expr] | None:
    """The names and constants an arithmetic expression (+, -, *, / only) is made of; None
    when it holds anything else (a call, an attribute: `loss.item()`)."""
    found, stack = [], [expression]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.BinOp) and isinstance(node.op, _ARITHMETIC):
            stack += [node.left, node.right]
        elif isinstance(node, (ast.Name, ast.Constant)):
            found.append(node)
        else:
            return None
    return found


class _AsNumber(ast.NodeTransformer):
    """Rewrites each use of one name as `name.item()`."""

    def __init__(self, name: str):
        self.name = name

    def visit_Name(self, node: ast.Name) -> ast.expr:
        """`name.item()` for the name, any other name as it is."""
        if node.id != self.name:
            return node
        return ast.Call(ast.Attribute(ast.Name(node.id, ast.Load()), "item", ast.Load()), [], [])


def _running(statement: ast.Assign, tensors: set[str]) -> Accumulation | None:
    """`avg = 0.9 * avg + 0.1 * loss`: a value carried across steps, made of the tensor."""
    holder = statement.targets[0].id
    names = {o.id for o in _operands(statement.value) or () if isinstance(o, ast.Name)}
    tensor = sorted((names - {holder}) & tensors)
    if holder not in names or not tensor:
        return None
    value = _AsNumber(tensor[0]).visit(copy.deepcopy(statement.value))
    return Accumulation(statement.lineno, holder, tensor[0], False, f"{holder} = {ast.unparse(value)}")


def _accumulated(statement: ast.stmt, tensors: set[str]) -> Accumulation | None:
    """The accumulation a statement makes of one of `tensors`, if it is one."""
    if (isinstance(statement, ast.AugAssign) and isinstance(statement.op, ast.Add)
            and isinstance(statement.target, ast.Name) and isinstance(statement.value, ast.Name)
            and statement.value.id in tensors):
        return Accumulation(statement.lineno, statement.target.id, statement.value.id, False)
    if (isinstance(statement, ast.Assign) and len(statement.targets) == 1
            and isinstance(statement.targets[0], ast.Name) and isinstance(statement.value, ast.BinOp)
            and isinstance(statement.value.op, ast.Add)):
        holder, operands = statement.targets[0].id, (statement.value.left, statement.value.right)
        names = [o.id for o in operands if isinstance(o, ast.Name)]
        if len(names) == 2 and holder in names and (set(names) - {holder}) & tensors:
            return Accumulation(statement.lineno, holder, (set(names) - {holder}).pop(), False)
    if isinstance(statement, ast.Assign) and len(statement.targets) == 1 and isinstance(statement.targets[0], ast.Name):
        return _running(statement, tensors)
    if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call):
        call = statement.value
        if (isinstance(call.func, ast.Attribute) and call.func.attr == "append" and len(call.args) == 1
                and isinstance(call.args[0], ast.Name) and call.args[0].id in tensors):
            return Accumulation(statement.lineno, text(call.func.value), call.args[0].id, True)
    return None


def accumulations(tree: ast.Module) -> list[Accumulation]:
    """Loops that add the tensor they call backward() on to something that outlives the step."""
    found = {}
    for loop in ast.walk(tree):
        if not isinstance(loop, (ast.For, ast.While, ast.AsyncFor)):
            continue
        tensors = _backward_receivers(loop)
        for statement in ast.walk(loop):
            accumulation = _accumulated(statement, tensors) if isinstance(statement, ast.stmt) else None
            if accumulation and accumulation.holder not in tensors:
                found[accumulation.line] = accumulation
    return [found[line] for line in sorted(found)]


def _detach_patterns(parameter: str) -> list[re.Pattern[str]]:
    """`head.weight.detach()`, `head.weight.data` and `head(x).detach()` for `model.head.weight`."""
    parts = parameter.split(".")
    patterns = [re.compile(rf"\b{re.escape('.'.join(parts[-2:]))}(\.detach\(\)|\.data\b)")]
    if len(parts) > 1:
        patterns.append(re.compile(rf"\b{re.escape(parts[-2])}\(.*\)\.detach\(\)"))
    return patterns


def detaching_lines(lines: list[str], parameter: str) -> list[int]:
    """Lines that cut `parameter` (a dotted name) out of the graph with `.detach()` or `.data`.

    Lines that assign to `.data` or read a `.grad` are updates, not the forward pass: skipped.
    """
    patterns = _detach_patterns(parameter)
    found = []
    for number, line in enumerate(lines, 1):
        code = line.split("#", 1)[0]
        if ".grad" in code or re.search(r"\.data\s*[-+*/]?=(?!=)", code):
            continue
        if any(p.search(code) for p in patterns):
            found.append(number)
    return found
