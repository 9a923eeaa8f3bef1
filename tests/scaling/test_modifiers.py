"""scalingModifiers formulas: KEDA's documented examples, expr-lang's precedence and nil rules, and errors."""

from __future__ import annotations

import pytest

from ebb.errors import FormulaError, SpecError
from ebb.scaling.modifiers import FormulaEvaluationError, compile_formula

NAMES = ("trig_one", "trig_two", "a", "b", "c")
OBJ = "ScaledObject default/worker"


def evaluate(formula: str, **values: float | None) -> float | None:
    return compile_formula(formula, NAMES, OBJ).evaluate(values)


@pytest.mark.parametrize(
    ("formula", "values", "expected"),
    [
        # KEDA docs examples.
        ("(trig_one + trig_two)/2", {"trig_one": 3, "trig_two": 6}, 4.5),
        ("trig_one > 2 ? trig_one + trig_two : 1", {"trig_one": 3, "trig_two": 6}, 9.0),
        ("trig_one > 2 ? trig_one + trig_two : 1", {"trig_one": 2, "trig_two": 6}, 1.0),
        ("a ?? b ?? 8", {"a": 5, "b": 7}, 5.0),
        ("a ?? b ?? 8", {"a": None, "b": 7}, 7.0),
        ("a ?? b ?? 8", {"a": None, "b": None}, 8.0),
        ("a ?? b ?? 8", {}, 8.0),  # a trigger missing from the values is nil
        ("max(a, b)", {"a": 2, "b": 9}, 9.0),
        ("min(a, b, 4)", {"a": 5, "b": 9}, 4.0),
        # Precedence (expr's operator table): * before +, ** right-associative and above unary minus.
        ("a + b * c", {"a": 1, "b": 2, "c": 3}, 7.0),
        ("(a + b) * c", {"a": 1, "b": 2, "c": 3}, 9.0),
        ("2 ** 3 ** 2", {}, 512.0),  # 2 ** 9
        ("2 ^ 3", {}, 8.0),
        ("-a ** 2", {"a": 3}, -9.0),  # -(3 ** 2)
        ("a - -b", {"a": 3, "b": 2}, 5.0),
        ("a * -b", {"a": 3, "b": 2}, -6.0),
        ("10 - 4 - 3", {}, 3.0),  # left-associative
        ("7 / 2", {}, 3.5),  # `/` always gives a float, even between integers
        ("7 % 3", {}, 1.0),
        ("-7 % 3", {}, -1.0),  # Go's remainder keeps the dividend's sign
        ("a % 4", {"a": 10.5}, 2.5),
        # Comparisons, chains and boolean operators feeding a ternary.
        ("1 < a < 3 ? 10 : 20", {"a": 2}, 10.0),
        ("1 < a < 3 ? 10 : 20", {"a": 5}, 20.0),  # chain is 1 < a && a < 3
        ("a == b ? 1 : 0", {"a": 2, "b": 2.0}, 1.0),
        ("a != b ? 1 : 0", {"a": 2, "b": 3}, 1.0),
        ("a > 1 && b > 1 ? 1 : 0", {"a": 2, "b": 0}, 0.0),
        ("a > 1 and b > 1 ? 1 : 0", {"a": 2, "b": 2}, 1.0),
        ("a > 1 || b > 1 ? 1 : 0", {"a": 0, "b": 2}, 1.0),
        ("a > 1 or b > 1 ? 1 : 0", {"a": 0, "b": 0}, 0.0),
        ("!(a > 1) ? 1 : 0", {"a": 0}, 1.0),
        ("not (a > 1) ? 1 : 0", {"a": 5}, 0.0),
        ("a == nil ? 3 : a", {"a": None}, 3.0),
        ("a == nil ? 3 : a", {"a": 4}, 4.0),
        ("true ? 1 : 2", {}, 1.0),
        ("a > 5 ? 1 : a > 2 ? 2 : 3", {"a": 3}, 2.0),  # ternaries nest to the right
        # `??` binds tighter than any other operator: 1 + (a ?? b).
        ("1 + a ?? b", {"a": None, "b": 4}, 5.0),
        ("(a ?? 2) * 3", {"a": None}, 6.0),
        # Short-circuit: the right side is not evaluated (b is nil, b > 1 would fail).
        ("a > 1 || b > 1 ? 1 : 0", {"a": 5, "b": None}, 1.0),
        # Functions.
        ("abs(a)", {"a": -2.5}, 2.5),
        ("ceil(a)", {"a": 1.2}, 2.0),
        ("floor(a)", {"a": 1.8}, 1.0),
        ("round(a)", {"a": 2.5}, 3.0),  # half away from zero, as Go's math.Round
        ("round(a)", {"a": -2.5}, -3.0),
        ("int(a)", {"a": -2.7}, -2.0),  # truncation
        ("float(7) / 2", {}, 3.5),
        ("1_000 + .5 + 1e2", {}, 1100.5),
        # A formula may evaluate to nil: the caller then uses the fallback.
        ("a ?? nil", {"a": None}, None),
        ("nil", {}, None),
    ],
)
def test_evaluate(formula: str, values: dict[str, float | None], expected: float | None) -> None:
    result = evaluate(formula, **values)
    assert result == expected
    assert result is None or isinstance(result, float)


@pytest.mark.parametrize(
    ("formula", "values", "fragment"),
    [
        ("a / b", {"a": 1, "b": 0}, "division by zero"),
        ("a % 0", {"a": 1}, "modulo by zero"),
        ("a + b", {"a": 1, "b": None}, "invalid operation: int + nil"),
        ("a > 2", {"a": 3}, "non-numeric result (bool)"),
        ("a ? 1 : 2", {"a": 1}, "needs a bool"),
        ("a && true ? 1 : 0", {"a": 1}, "needs a bool"),
        ("-a", {"a": None}, "needs a number, got nil"),
        ("max(a, b)", {"a": 1, "b": None}, "needs a number, got nil"),
        ("a > nil ? 1 : 0", {"a": 1}, "invalid operation"),
        ("10 ** a", {"a": 400}, "10 ** 400"),  # overflow
        ("a ** 0.5", {"a": -4}, "math domain error"),
        ("int(a / 0.0 + 1)", {"a": 1}, "division by zero"),
    ],
)
def test_evaluation_errors_are_typed(formula: str, values: dict[str, float | None], fragment: str) -> None:
    with pytest.raises(FormulaEvaluationError) as info:
        evaluate(formula, **values)
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"{OBJ}: spec.advanced.scalingModifiers.formula:")


@pytest.mark.parametrize(
    ("formula", "fragment"),
    [
        ("", "the formula is empty"),
        ("a +", "ends too early"),
        ("(a + b", "ends too early"),
        ("a b", "column 3: unexpected 'b'"),
        ("a # b", "column 3: unexpected character '#'"),
        ("a + x", "unknown name 'x' at line 1, column 5; known trigger names: a, b, c, trig_one, trig_two"),
        ("foo(a)", "unknown function 'foo' at line 1, column 1"),
        ("abs(a, b)", "abs() takes exactly 1 argument, got 2"),
        ("max()", "max() needs at least 1 argument"),
        # expr refuses another operator right after a coalesce without parentheses.
        ("a ?? b + 1", "operator '+' and coalesce expressions (??) cannot be mixed at line 1, column 8"),
        ("a ?? b == 1", "operator '==' and coalesce expressions (??) cannot be mixed"),
        ("a ?? b || true", "operator '||' and coalesce expressions (??) cannot be mixed"),
        ("a = 1", "unexpected character '='"),
        ("'text'", "unexpected character"),
    ],
)
def test_compile_errors_name_the_field_and_the_place(formula: str, fragment: str) -> None:
    with pytest.raises(FormulaError) as info:
        compile_formula(formula, NAMES, OBJ)
    err = info.value
    assert isinstance(err, SpecError)
    assert (err.obj, err.field) == (OBJ, "spec.advanced.scalingModifiers.formula")
    assert fragment in err.message


def test_no_named_triggers_is_explained() -> None:
    with pytest.raises(FormulaError, match="only triggers with a `name` can be used"):
        compile_formula("a + 1", [], OBJ)


def test_keywords_do_not_swallow_longer_names() -> None:
    # `android`, `order` and `nilly` start with keywords but are names.
    formula = compile_formula("android + order + nilly", ["android", "order", "nilly"], OBJ)
    assert formula.evaluate({"android": 1, "order": 2, "nilly": 3}) == 6.0
    assert formula.names == frozenset({"android", "order", "nilly"})


def test_names_lists_only_referenced_triggers() -> None:
    assert compile_formula("a * 2", NAMES, OBJ).names == frozenset({"a"})
