"""Hostile and broken YAML: bounded depth, size and aliases; syntax errors on the line to fix; linear loading."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ebb.spec import ManifestError, ResourceSet, ScaledObject, load_files, load_text
from ebb.spec import loader as loader_module
from tests.spec.test_loader import so_text


def only_error(text: str, source: str = "h.yaml") -> ManifestError:
    result = load_text(text, source)
    assert len(result.errors) == 1, result.errors
    error = result.errors[0]
    assert isinstance(error, ManifestError)
    return error


@pytest.mark.parametrize(
    "text",
    [
        "a: " + "[" * 1000 + "]" * 1000 + "\n",
        "a: " + "{b: " * 1000 + "1" + "}" * 1000 + "\n",
        "".join("  " * i + f"k{i}:\n" for i in range(1000)) + "  " * 1000 + "v\n",
        "".join("  " * i + "-\n" for i in range(1000)) + "  " * 1000 + "x\n",
    ],
    ids=["flow-lists", "flow-maps", "block-maps", "block-lists"],
)
def test_deep_nesting_is_refused_not_a_recursion_error(text: str) -> None:
    error = only_error(text)
    assert error.message == f"refused: nested more than {loader_module.MAX_DEPTH} levels deep"
    assert error.line is not None


def test_normal_nesting_is_far_below_the_bound() -> None:
    assert load_text(so_text("a")).errors == []


BOMB = """\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: bomb
  annotations:
    a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
    a1: &a1 [*a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0]
    a2: &a2 [*a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1]
    a3: &a3 [*a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2]
    a4: &a4 [*a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3]
    a5: &a5 [*a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4]
    a6: &a6 [*a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5]
    a7: &a7 [*a6, *a6, *a6, *a6, *a6, *a6, *a6, *a6, *a6]
    a8: &a8 [*a7, *a7, *a7, *a7, *a7, *a7, *a7, *a7, *a7]
spec:
  scaleTargetRef: {name: bomb}
  triggers: [{type: redis, metadata: {address: "localhost:6379", listName: jobs}}]
"""


def test_an_alias_bomb_is_refused_quickly() -> None:
    started = time.perf_counter()
    result = load_text(BOMB + "---\n" + so_text("after"), "bomb.yaml")
    assert time.perf_counter() - started < 2.0
    assert [obj.name for obj in result.objects] == ["after"]  # the next document still loads
    (error,) = result.errors
    assert isinstance(error, ManifestError)
    assert str(error).startswith("bomb.yaml:1: document 1: refused: aliases expand this document to more than")


def test_moderate_aliases_are_fine() -> None:
    text = so_text("a").replace("metadata:\n  name: a\n", "metadata:\n  name: a\n  labels: &l {team: x}\n")
    text = text.replace("    metadata:\n      listName: jobs\n", "    metadata: {listName: jobs}\n")
    assert load_text(text).errors == []


def test_a_recursive_alias_is_refused() -> None:
    error = only_error("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: &d {x: *d}\n")
    assert "refused: an alias refers to the mapping or list that contains it" in error.message


def test_a_huge_document_is_refused_while_it_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader_module, "MAX_NODES", 1000)
    error = only_error("items:\n" + "- x\n" * 5000)
    assert error.message == "refused: a document of more than 1,000 nodes"


def test_a_huge_file_is_refused_without_reading_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader_module, "MAX_FILE_BYTES", 2**20)
    path = tmp_path / "big.yaml"
    path.write_text("# padding\n" * 200_000)
    result = load_files([path])
    assert [str(e) for e in result.errors] == [f"{path}: {path}: refused: larger than 1 MiB"]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('a: 1\nb: "unclosed\nc: 3\nd: 4\n', 2),  # found at the end of the file
        ("a: 1\nb: [1, 2\nc: 3\nd: 4\n", 2),  # found on the next line
        ("a: 1\nb: {x: 1\nc: 3\n", 2),
        ("a: 1\nb:\n\t- x\nc: 3\n", 3),
        ("a: 1\n  b: 2\nc: 3\n", 2),
        ("a:\n  b: 1\n c: 2\n", 3),
        ("a: 1\nb: *nope\n", 2),
    ],
)
def test_yaml_syntax_errors_point_at_the_line_to_fix(text: str, line: int) -> None:
    error = only_error(text)
    assert error.line == line, str(error)
    assert str(error).startswith(f"h.yaml:{line}: document 1: invalid YAML")


def test_adding_many_scaled_objects_is_linear() -> None:
    """3,000 ScaledObjects took ~6 s when each was compared with every other one; now milliseconds."""
    text = "---\n".join(so_text(f"w{i}") for i in range(3000))
    objects = load_text(text).of(ScaledObject)
    assert len(objects) == 3000
    started = time.perf_counter()
    resources = ResourceSet(objects)
    for group_name in ("w0", "w2999"):
        assert resources.get(ScaledObject, "default", group_name) is not None
    assert time.perf_counter() - started < 0.5
