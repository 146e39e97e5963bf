"""A safe arithmetic evaluator: numbers, + - * / // % ** and parentheses, bounded work."""

import ast
import math
import operator
from collections.abc import Callable

MAX_EXPRESSION_CHARS = 200
MAX_NODES = 100
MAX_INT_BITS = 4096
MAX_EXPONENT = 10_000

Number = int | float


class CalculationError(ValueError):
    """The expression is not allowed or cannot be computed."""


_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Number], Number]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}


def evaluate(expression: str) -> Number:
    """Evaluate an arithmetic expression without eval, within fixed bounds."""
    if not isinstance(expression, str) or not expression.strip():
        raise CalculationError("expression must be a non-empty string")
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculationError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    text = expression.replace("^", "**").replace("×", "*").replace("÷", "/")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise CalculationError("not a valid arithmetic expression") from exc
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise CalculationError("expression is too complex")
    try:
        value = _eval(tree.body)
    except ZeroDivisionError as exc:
        raise CalculationError("division by zero") from exc
    except (OverflowError, RecursionError, MemoryError) as exc:
        raise CalculationError("result is too large") from exc
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculationError("result is too large")
    return value


def _eval(node: ast.AST) -> Number:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise CalculationError("only numbers are allowed")
        return _checked(node.value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _checked(_UNARY[type(node.op)](_eval(node.operand)))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        return _checked(_BINARY[type(node.op)](left, right))
    raise CalculationError("only numbers, + - * / // % ** and parentheses are allowed")


def _check_power(base: Number, exponent: Number) -> None:
    if abs(exponent) > MAX_EXPONENT:
        raise CalculationError(f"exponent larger than {MAX_EXPONENT}")
    integral = isinstance(base, int) and isinstance(exponent, int) and exponent > 0
    if integral and max(abs(int(base)).bit_length() - 1, 0) * exponent > MAX_INT_BITS:
        raise CalculationError("result is too large")


def _checked(value: Number) -> Number:
    if isinstance(value, complex):
        raise CalculationError("result is not a real number")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise CalculationError("result is too large")
    return value


def format_number(value: Number) -> str:
    """Format a result for people: integral floats without '.0', others trimmed."""
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.12g}"
    return str(value)
