"""A calculator tool: arithmetic a small model gets wrong, evaluated safely.

Why not ``eval``: the expression comes from a model, which may have read adversarial text. The evaluator
walks the ``ast`` and allows only numbers, arithmetic operators, parentheses and a short list of math
functions, and bounds sizes (expression length, exponents, integer bits) so that ``9**9**9`` cannot hang
the process. Bad input raises :class:`ToolError`, which the runner reports to the model without retrying.

Every operation is bounded before it runs (expression length, exponents, ``round`` digits, factorial, the bits
of every integer result), because the tool runs on the caller's thread with no timeout: nothing could stop a
hung evaluation, not even the run's time budget. Nesting is bounded too, but a flat chain such as
``1 + 2 + ... + 100`` is one level deep, however many terms it has (it is evaluated as a loop).
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from thrifty.tools.base import ToolError, tool

__all__ = ["calculator", "evaluate"]

MAX_EXPRESSION_CHARS = 500
MAX_INT_BITS = 4096  # about 1,233 decimal digits
MAX_EXPONENT = 10_000
MAX_DEPTH = 50
MAX_ROUND_DIGITS = 1_300  # beyond the ~1,233 digits an integer may have, rounding changes nothing
MAX_FACTORIAL = 500

Number = int | float


def _truediv(a: Number, b: Number) -> Number:
    return a / b  # typeshed leaves operator.truediv unannotated


def _floordiv(a: Number, b: Number) -> Number:
    return a // b  # likewise operator.floordiv


_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: _truediv,
    ast.FloorDiv: _floordiv,
    ast.Mod: operator.mod,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}


def _check_int(value: Number) -> Number:
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise ToolError(f"result too large (more than {MAX_INT_BITS} bits)")
    return value


def _too_many_bits(base: int, exponent: int) -> bool:
    """Whether ``base ** exponent`` would have more than MAX_INT_BITS bits (judged without computing it)."""
    return abs(base) > 1 and exponent > 0 and (abs(base).bit_length() - 1) * exponent > MAX_INT_BITS


def _power(base: Number, exponent: Number) -> Number:
    """``base ** exponent`` with its size bounded before it is computed."""
    if abs(exponent) > MAX_EXPONENT:
        raise ToolError(f"exponent {exponent:g} too large (limit {MAX_EXPONENT})")
    if isinstance(base, int) and isinstance(exponent, int) and _too_many_bits(base, exponent):
        raise ToolError(f"result too large (more than {MAX_INT_BITS} bits)")
    if base == 0 and exponent < 0:
        raise ToolError("division by zero (0 to a negative power)")
    result = base**exponent
    if isinstance(result, complex):
        raise ToolError("result is not a real number (negative base to a fractional power)")
    return result


def _log(x: Number, base: Number | None = None) -> float:
    return math.log(x) if base is None else math.log(x, base)


def _round(x: Number, digits: Number | None = None) -> Number:
    if digits is None:
        return round(x)
    if not isinstance(digits, int):
        raise ToolError("round() digits must be an integer")
    if abs(digits) > MAX_ROUND_DIGITS:
        # round(1, -10**9) would compute 10**(10**9): refuse it before it starts
        raise ToolError(f"round() digits out of range (limit -{MAX_ROUND_DIGITS} to {MAX_ROUND_DIGITS})")
    return round(x, digits)


def _factorial(n: Number) -> int:
    if not isinstance(n, int) or n < 0:
        raise ToolError("factorial() needs a non-negative integer")
    if n > MAX_FACTORIAL:
        raise ToolError(f"factorial() argument too large (limit {MAX_FACTORIAL})")
    return math.factorial(n)


# Callable[..., Any]: the generic builtins (abs, min, max) are typed to return what they are given, and
# _eval gives them only numbers.
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt,
    "log": _log,
    "log10": math.log10,
    "log2": math.log2,
    "exp": math.exp,
    "abs": abs,
    "round": _round,
    "min": min,
    "max": max,
    "floor": math.floor,
    "ceil": math.ceil,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "pow": _power,
    "factorial": _factorial,
}


def _eval(node: ast.AST, depth: int = 0) -> Number:
    if depth > MAX_DEPTH:
        raise ToolError("expression nested too deeply")
    if isinstance(node, ast.Expression):
        return _eval(node.body, depth + 1)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise ToolError(f"only numbers are allowed, not {node.value!r}")
        return _check_int(node.value)
    if isinstance(node, ast.BinOp):
        return _eval_binop(node, depth)
    if isinstance(node, ast.UnaryOp):
        unary = _UNARY.get(type(node.op))
        if unary is None:
            raise ToolError(f"operator {type(node.op).__name__} is not allowed")
        return _check_int(unary(_eval(node.operand, depth + 1)))
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        raise ToolError(f"unknown name {node.id!r}; only numbers, pi, e, tau and math functions are allowed")
    if isinstance(node, ast.Call):
        return _eval_call(node, depth)
    raise ToolError(f"{type(node).__name__} is not allowed in a calculation")


def _eval_binop(node: ast.BinOp, depth: int) -> Number:
    """A left-associative chain (``a + b - c * d ...``: BinOps down the left side) is evaluated as a loop at
    one depth, so a flat sum of many terms is not mistaken for deep nesting; right operands nest."""
    chain: list[ast.BinOp] = []
    current: ast.expr = node
    while isinstance(current, ast.BinOp):
        chain.append(current)
        current = current.left
    value = _eval(current, depth + 1)
    for link in reversed(chain):
        value = _apply(link.op, value, _eval(link.right, depth + 1))
    return value


def _apply(op: ast.operator, left: Number, right: Number) -> Number:
    if isinstance(op, ast.Pow):
        return _check_int(_power(left, right))
    fn = _BINARY.get(type(op))
    if fn is None:
        raise ToolError(f"operator {type(op).__name__} is not allowed; use + - * / // % **")
    if isinstance(op, ast.Mod | ast.FloorDiv | ast.Div) and right == 0:
        raise ToolError("division by zero")
    return _check_int(fn(left, right))


def _eval_call(node: ast.Call, depth: int) -> Number:
    if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
        shown = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
        raise ToolError(f"function {shown!r} is not allowed; allowed: {', '.join(sorted(_FUNCTIONS))}")
    if node.keywords:
        raise ToolError("keyword arguments are not allowed")
    args = [_eval(arg, depth + 1) for arg in node.args]
    try:
        return _check_int(_FUNCTIONS[node.func.id](*args))
    except TypeError as exc:
        raise ToolError(f"{node.func.id}(): {exc}") from None


def evaluate(expression: str) -> Number:
    """Evaluate an arithmetic expression safely; raises ToolError saying what is wrong."""
    if len(expression) > 4 * MAX_EXPRESSION_CHARS:  # refused before any work on it
        raise ToolError(f"expression too long (limit {MAX_EXPRESSION_CHARS} characters)")
    text = expression.strip().replace("^", "**").replace("×", "*").replace("÷", "/")
    if not text:
        raise ToolError("empty expression")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ToolError(f"expression too long (limit {MAX_EXPRESSION_CHARS} characters)")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ToolError(f"cannot parse {expression!r}: {exc.msg}") from None
    try:
        return _eval(tree)
    except ZeroDivisionError:
        raise ToolError("division by zero") from None
    except OverflowError:
        raise ToolError("result too large") from None
    except ValueError as exc:  # math domain errors: sqrt(-1), log(0)
        raise ToolError(f"math error: {exc}") from None
    except RecursionError:
        raise ToolError("expression nested too deeply") from None


def format_number(value: Number) -> str:
    """Integers exactly; floats to 12 significant digits, whole ones without a trailing ``.0``."""
    if isinstance(value, int):
        return str(value)
    if math.isnan(value) or math.isinf(value):
        raise ToolError("result is not a finite number")
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.12g}"


@tool(price=0.0, timeout=None)  # every operation is bounded above, so it cannot hang: no thread hand-off
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression exactly, e.g. "(1969 - 1912) * 2" or "sqrt(2) / 3".

    Args:
        expression: Numbers with + - * / // % ** and parentheses; functions sqrt, log, log10, log2, exp, abs,
            round, min, max, floor, ceil, sin, cos, tan, pow, factorial; constants pi, e.
    """
    return format_number(evaluate(expression))
