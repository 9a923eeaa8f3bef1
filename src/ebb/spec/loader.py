"""Reading manifests: multi-document YAML in, validated objects and readable errors out.

One broken document never hides the others: each is validated on its own and every problem becomes a
`SpecError` naming the object ("ScaledObject default/worker", or "document 2" of a file when even
that is unknown), the field path (`spec.triggers[0].metadata`) and what was expected. Errors from files
also carry the file and line.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ebb.errors import SpecError
from ebb.spec.models import (
    KINDS,
    FieldIssue,
    KubeObject,
    PathElement,
    ScaledJob,
    ScaledObject,
    describe,
    kind_of,
    kubernetes_string_problems,
)
from ebb.spec.paths import format_path, parse_path
from ebb.spec.resources import ResourceSet

T = TypeVar("T", bound=KubeObject)

YAML_SUFFIXES = (".yaml", ".yml")

#: Bounds on what one file may make ebb build. A real manifest is a few hundred nodes, nested a dozen deep;
#: these refuse hostile input (deep nesting, alias bombs, huge files) in milliseconds instead of exhausting
#: the stack or memory. Kubernetes refuses objects over 1.5 MiB; a file may hold many.
MAX_FILE_BYTES = 16 * 2**20
#: Nesting of mappings and lists in one document.
MAX_DEPTH = 100
#: Nodes (mappings, lists, scalars) in one document as written.
MAX_NODES = 1_000_000
#: Nodes in one document once aliases are expanded: what validation walks. Like Go's yaml.v3 (Kubernetes'
#: parser), aliases may multiply a document's size only moderately.
MAX_EXPANDED_NODES = 10_000
MAX_ALIAS_RATIO = 10


class ManifestError(SpecError):
    """A SpecError found in a file: also says where (`source` file, 1-based `line`)."""

    def __init__(
        self, obj: str, field: str, message: str, *, source: str | None = None, line: int | None = None
    ) -> None:
        self.source = source
        self.line = line
        super().__init__(obj, field, message)

    def __str__(self) -> str:
        text = super().__str__()
        if self.source is None:
            return text
        where = f"{self.source}:{self.line}" if self.line is not None else self.source
        return f"{where}: {text}"


@dataclass
class LoadResult:
    """What loading found: the valid objects (indexed in `resources`) and an error for everything else."""

    objects: list[KubeObject] = field(default_factory=list)
    errors: list[SpecError] = field(default_factory=list)
    #: Documents of kinds ebb does not read, when loading with `ignore_unknown=True`.
    skipped: list[str] = field(default_factory=list)
    #: Valid objects with settings that have no effect (KEDA's webhook warnings); not errors.
    warnings: list[SpecError] = field(default_factory=list)
    resources: ResourceSet = field(default_factory=ResourceSet)
    #: Where each loaded object was written: (file, its YAML node), by object key.
    origins: dict[tuple[str, str, str], tuple[str, Node | None]] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return not self.errors

    def locate(self, error: SpecError, obj: KubeObject | None = None) -> SpecError:
        """`error`, raised about a loaded object after loading (by a scaler, a check), with its file and line.

        The line is that of the field the error names, or of the nearest enclosing one.
        """
        if isinstance(error, ManifestError) or obj is None:
            return error
        origin = self.origins.get(obj.key)
        if origin is None:
            return error
        source, node = origin
        line = _locate(node, parse_path(error.field))
        located = ManifestError(error.obj, error.field, error.message, source=source, line=line)
        return located

    def of(self, model: type[T]) -> list[T]:
        """The loaded objects of one kind: `result.of(ScaledObject)`."""
        return [obj for obj in self.objects if isinstance(obj, model)]


# --- YAML ------------------------------------------------------------------------------------------


class _LimitError(yaml.MarkedYAMLError):
    """A document exceeds one of the loader's bounds (depth, size, alias expansion)."""


class _Loader(yaml.SafeLoader):
    """Safe YAML, except that timestamps stay strings: pydantic parses the one field that is a time.

    Composing is bounded: a document nested deeper than MAX_DEPTH or larger than MAX_NODES is refused while
    it is read, before it can exhaust the stack or memory.
    """

    _depth = 0
    _nodes = 0

    def compose_document(self) -> Node | None:
        self._depth, self._nodes = 0, 0
        node: Node | None = super().compose_document()
        return node

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self._nodes += 1
        if self._nodes > MAX_NODES:
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise _LimitError(None, None, f"refused: a document of more than {MAX_NODES:,} nodes", mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise _LimitError(None, None, f"refused: nested more than {MAX_DEPTH} levels deep", mark)
            node: Node | None = super().compose_node(parent, index)
            return node
        finally:
            self._depth -= 1


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _expansion_problem(root: Node) -> tuple[Node, str] | None:
    """Whether aliases make `root` too big or too deep once expanded (or cyclic): (where, why), or None.

    Sizes and depths are computed per distinct node, bottom up, so an alias bomb costs what it is written in.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    distinct = 0
    on_path: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children: list[Node] = []
        if isinstance(node, MappingNode):
            children = [child for pair in node.value for child in pair]
        elif isinstance(node, SequenceNode):
            children = list(node.value)
        if done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(child)] for child in children)
            depth[key] = 1 + max((depth[id(child)] for child in children), default=0)
            continue
        if key in size:
            continue
        if key in on_path:
            return node, "refused: an alias refers to the mapping or list that contains it"
        distinct += 1
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in size)
    expanded = size[id(root)]
    limit = max(MAX_EXPANDED_NODES, MAX_ALIAS_RATIO * distinct)
    if expanded > limit:
        return root, (
            f"refused: aliases expand this document to more than {limit:,} nodes "
            f"({distinct:,} written, {MAX_ALIAS_RATIO}x allowed)"
        )
    if depth[id(root)] > MAX_DEPTH:
        return root, f"refused: aliases nest this document more than {MAX_DEPTH} levels deep"
    return None


def _locate(node: Node | None, loc: Sequence[PathElement]) -> int | None:
    """The line of the deepest YAML node along `loc` (a mapping entry's key line, a list item's line)."""
    if node is None:
        return None
    line = _line(node)
    current: Node = node
    for element in loc:
        if isinstance(current, MappingNode) and isinstance(element, str):
            for key, value in current.value:
                if isinstance(key, ScalarNode) and key.value == element:
                    line, current = _line(key), value
                    break
            else:
                return line
        elif isinstance(current, SequenceNode) and isinstance(element, int) and element < len(current.value):
            current = current.value[element]
            line = _line(current)
        else:
            return line
    return line


_Duplicate = tuple[tuple[PathElement, ...], str, int]


def _duplicate_keys(node: Node) -> Iterator[_Duplicate]:
    """Keys written twice in one mapping (YAML keeps the last silently; Kubernetes refuses them)."""
    seen_nodes: set[int] = set()

    def walk(current: Node, path: tuple[PathElement, ...]) -> Iterator[_Duplicate]:
        if id(current) in seen_nodes:
            return
        seen_nodes.add(id(current))
        if isinstance(current, MappingNode):
            first_lines: dict[str, int] = {}
            for key, value in current.value:
                if not isinstance(key, ScalarNode) or key.value == "<<":
                    continue
                if key.value in first_lines:
                    yield (
                        (*path, key.value),
                        f"duplicate key {key.value!r} (first on line {first_lines[key.value]})",
                        _line(key),
                    )
                else:
                    first_lines[key.value] = _line(key)
                yield from walk(value, (*path, key.value))
        elif isinstance(current, SequenceNode):
            for index, item in enumerate(current.value):
                yield from walk(item, (*path, index))

    return walk(node, ())


# --- pydantic errors -> SpecError ------------------------------------------------------------------

_UNION_TAGS = (
    "function-",
    "chain[",
    "lax-or-strict[",
    "nullable[",
    "union[",
    "tagged-union[",
    "json-or-python[",
    "default[",
)

_EXPECTED = {
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "finite_number": "expected a finite number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "string_type": "expected a string",
    "list_type": "expected a list",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
    "datetime_type": "expected a timestamp such as 2024-01-31T12:00:00Z",
    "datetime_parsing": "expected a timestamp such as 2024-01-31T12:00:00Z",
    "datetime_from_date_parsing": "expected a timestamp such as 2024-01-31T12:00:00Z",
}


def _clean_loc(loc: Sequence[PathElement]) -> tuple[PathElement, ...]:
    return tuple(
        element
        for element in loc
        if not (isinstance(element, str) and (element == "[key]" or element.startswith(_UNION_TAGS)))
    )


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin is Union or origin is types.UnionType:
            members = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _model_at(root: type[BaseModel], loc: Sequence[PathElement]) -> type[BaseModel] | None:
    """The model class found by following `loc` (aliases and list indexes) from `root`."""
    annotation: Any = root
    for element in loc:
        annotation = _unwrap(annotation)
        origin = get_origin(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found = next(
                (info.annotation for name, info in annotation.model_fields.items() if element in (info.alias, name)),
                None,
            )
            if found is None:
                return None
            annotation = found
        elif origin in (list, tuple, Sequence) and isinstance(element, int):
            annotation = get_args(annotation)[0]
        elif origin in (dict, Mapping) and isinstance(element, str):
            annotation = get_args(annotation)[1]
        else:
            return None
    annotation = _unwrap(annotation)
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _unknown_field_message(root: type[BaseModel], loc: tuple[PathElement, ...]) -> str:
    name = str(loc[-1])
    message = f"unknown field {name!r}"
    parent = _model_at(root, loc[:-1])
    if parent is None:
        return message
    known = [info.alias or fname for fname, info in parent.model_fields.items()]
    if to_camel(name) in known and to_camel(name) != name:
        return f"{message} (write it in camelCase: {to_camel(name)!r})"
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        return f"{message} (did you mean {close[0]!r}?)"
    return message


def _message(error: ErrorDetails, root: type[BaseModel], loc: tuple[PathElement, ...], echo: bool) -> str:
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    value = error.get("input")
    got = f", got {describe(value, echo=echo)}"
    if kind == "missing":
        return "required field missing"
    if kind == "extra_forbidden" and loc:
        return _unknown_field_message(root, loc)
    if kind in _EXPECTED:
        return _EXPECTED[kind] + got
    if kind == "literal_error":
        return f"expected {ctx.get('expected', 'one of the allowed values')}{got}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = next(iter(ctx.values()), "")
        words = {
            "greater_than_equal": "at least",
            "greater_than": "greater than",
            "less_than_equal": "at most",
            "less_than": "less than",
        }[kind]
        return f"must be {words} {bound}{got}"
    if kind in ("too_short", "string_too_short"):
        least = int(ctx.get("min_length", 1))
        if kind == "string_too_short":
            return "must not be empty" if least == 1 else f"must be at least {least} characters long"
        return f"must have at least {least} item{'s' if least != 1 else ''}"
    if kind in ("too_long", "string_too_long"):
        return f"must be at most {ctx.get('max_length')} {'characters' if 'string' in kind else 'items'} long"
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])
    return str(error["msg"])


def validation_problems(
    exc: ValidationError, root: type[BaseModel], *, echo: bool = True
) -> list[tuple[tuple[PathElement, ...], str]]:
    """pydantic's errors as (location, readable message) pairs; `echo=False` keeps values out of messages."""
    problems: list[tuple[tuple[PathElement, ...], str]] = []
    for error in exc.errors(include_url=False):
        loc = _clean_loc(error["loc"])
        issue = (error.get("ctx") or {}).get("error")
        if isinstance(issue, FieldIssue):
            problems.extend(((*loc, *rel), message) for rel, message in issue.issues)
        else:
            problems.append((loc, _message(error, root, loc, echo)))
    return problems


# --- documents -> objects --------------------------------------------------------------------------


def _object_label(data: Mapping[str, Any], fallback: str) -> str:
    kind = data.get("kind")
    metadata = data.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(kind, str) or not kind or not isinstance(name, str) or not name:
        return fallback
    if kind in ("ClusterTriggerAuthentication", "ClusterCloudEventSource"):
        return f"{kind} {name}"
    namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
    return f"{kind} {namespace if isinstance(namespace, str) and namespace else 'default'}/{name}"


def _kind_problem(api_version: Any, kind: Any) -> tuple[tuple[PathElement, ...], str] | None:
    if not isinstance(api_version, str) or not api_version:
        return (("apiVersion",), "required field missing")
    if not isinstance(kind, str) or not kind:
        return (("kind",), "required field missing")
    if (api_version, kind) in KINDS:
        return None
    versions = [version for version, known in KINDS if known == kind]
    if versions:
        return (("apiVersion",), f"kind {kind} is read as apiVersion {versions[0]}, got {api_version!r}")
    known = sorted({known for _, known in KINDS})
    close = difflib.get_close_matches(kind, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return (("kind",), f"unknown kind {kind!r} (apiVersion {api_version}); {hint}ebb reads {', '.join(known)}")


def _own_group(api_version: Any) -> bool:
    """Whether `api_version` is KEDA's or ebb's: an unknown kind there is a typo, not another tool's object."""
    if not isinstance(api_version, str):
        return False
    group = api_version.rpartition("/")[0]
    return group in {version.rpartition("/")[0] for version, _ in KINDS if "/" in version}


def parse_object(data: Any, *, label: str = "object") -> tuple[KubeObject | None, list[SpecError]]:
    """Validate one manifest already parsed into Python data (e.g. from the Kubernetes API).

    Returns the object, or None and the errors. `label` names the object when the manifest itself cannot.
    """
    parsed = _Parsed(data, label, node=None, source=None)
    return parsed.obj, parsed.errors


class _Parsed:
    """One document (or one item of a List) turned into an object or errors."""

    def __init__(self, data: Any, label: str, *, node: Node | None, source: str | None) -> None:
        self.obj: KubeObject | None = None
        self.errors: list[SpecError] = []
        self._node = node
        self._source = source
        self.label = label
        self._parse(data)

    def error(self, loc: Sequence[PathElement], message: str, line: int | None = None) -> None:
        if line is None and self._source is not None:
            line = _locate(self._node, loc)
        self.errors.append(ManifestError(self.label, format_path(loc), message, source=self._source, line=line))

    def _parse(self, data: Any) -> None:
        if not isinstance(data, dict):
            self.error((), f"expected a mapping with apiVersion and kind, got {describe(data, echo=False)}")
            return
        self.label = _object_label(data, self.label)
        problem = _kind_problem(data.get("apiVersion"), data.get("kind"))
        if problem is not None:
            self.error(*problem)
            return
        if self._node is not None:
            duplicates = list(_duplicate_keys(self._node))
            for loc, message, line in duplicates:
                self.error(loc, message, line)
            if duplicates:
                return
        model = KINDS[(data["apiVersion"], data["kind"])]
        try:
            obj = model.model_validate(data, by_alias=True, by_name=False)
        except ValidationError as exc:
            # A Secret's values must never reach a message, not even a malformed one.
            echo = kind_of(model) != "Secret"
            problems = validation_problems(exc, model, echo=echo)
            # Report in the order of the file, as a reader goes through it.
            problems.sort(key=lambda problem: _locate(self._node, problem[0]) or 0)
            for loc, message in problems:
                self.error(loc, message)
            return
        if isinstance(obj, ScaledObject | ScaledJob) and obj.cluster_bound:
            problems = kubernetes_string_problems(data)
            for loc, message in problems:
                self.error(loc, message)
            if problems:
                return
        if self._source is not None:
            obj.set_source(f"{self._source}:{_line(self._node)}" if self._node is not None else self._source)
        self.obj = obj


def _is_list(data: Any) -> bool:
    # `kubectl get -o yaml` writes several objects as one `kind: List` (or `<Kind>List`) with items.
    return (
        isinstance(data, dict)
        and isinstance(data.get("kind"), str)
        and data["kind"].endswith("List")
        and isinstance(data.get("items"), list)
    )


class _Collector:
    def __init__(self, result: LoadResult, ignore_unknown: bool) -> None:
        self.result = result
        self.ignore_unknown = ignore_unknown

    def document(self, data: Any, node: Node | None, label: str, source: str) -> None:
        if data is None:
            return
        if _is_list(data):
            items_node = _child(node, "items")
            for index, item in enumerate(data["items"]):
                item_node = items_node.value[index] if isinstance(items_node, SequenceNode) else None
                self.document(item, item_node, f"item {index} of {label}", source)
            return
        if (
            self.ignore_unknown
            and isinstance(data, dict)
            and (data.get("apiVersion"), data.get("kind")) not in KINDS
            and isinstance(data.get("kind"), str)
            and data.get("kind") not in {kind for _, kind in KINDS}
            and not _own_group(data.get("apiVersion"))
        ):
            self.result.skipped.append(_object_label(data, label))
            return
        parsed = _Parsed(data, label, node=node, source=source)
        self.result.errors.extend(parsed.errors)
        if parsed.obj is None:
            return
        conflicts = self.result.resources.conflicts(parsed.obj)
        if conflicts:
            for loc, message in conflicts:
                parsed.error(loc, message)
            self.result.errors.extend(parsed.errors)
            return
        self.result.resources.add(parsed.obj)
        self.result.objects.append(parsed.obj)
        self.result.origins[parsed.obj.key] = (source, node)
        if isinstance(parsed.obj, ScaledObject | ScaledJob):
            for loc, message in parsed.obj.warnings():
                parsed.error(loc, message)
            self.result.warnings.extend(parsed.errors)

    def text(self, text: str, source: str) -> None:
        if len(text) > MAX_FILE_BYTES:
            message = f"refused: larger than {MAX_FILE_BYTES // 2**20} MiB"
            self.result.errors.append(ManifestError(source, "", message, source=source))
            return
        try:
            loader = _Loader(text)
        except yaml.reader.ReaderError as exc:
            self._reader_error(exc, text, 1, source)
            return
        number = 0
        try:
            while True:
                try:
                    if not loader.check_node():
                        break
                    node = loader.get_node()
                except yaml.MarkedYAMLError as exc:
                    self._yaml_error(exc, number + 1, source)
                    return
                except yaml.reader.ReaderError as exc:
                    self._reader_error(exc, text, number + 1, source)
                    return
                number += 1
                label = f"document {number}"
                if node is not None:
                    problem = _expansion_problem(node)
                    if problem is not None:
                        where, message = problem
                        self.result.errors.append(ManifestError(label, "", message, source=source, line=_line(where)))
                        continue
                try:
                    data = loader.construct_document(node)
                except yaml.MarkedYAMLError as exc:
                    self._yaml_error(exc, number, source)
                    continue
                self.document(data, node, label, source)
        finally:
            loader.dispose()

    def _reader_error(self, exc: yaml.reader.ReaderError, text: str, number: int, source: str) -> None:
        """A character YAML does not allow (a control character, a NUL)."""
        position = min(max(int(exc.position), 0), len(text))
        line = text.count("\n", 0, position) + 1
        column = position - (text.rfind("\n", 0, position) + 1) + 1
        message = f"invalid YAML (column {column}): character {int(exc.character):#06x} is not allowed in YAML"
        self.result.errors.append(ManifestError(f"document {number}", "", message, source=source, line=line))

    def _yaml_error(self, exc: yaml.MarkedYAMLError, number: int, source: str) -> None:
        label = f"document {number}"
        if isinstance(exc, _LimitError):
            line = exc.problem_mark.line + 1 if exc.problem_mark is not None else None
            self.result.errors.append(ManifestError(label, "", exc.problem or "", source=source, line=line))
            return
        mark, problem = exc.problem_mark, " ".join((exc.problem or "not valid YAML").split())
        context = " ".join((exc.context or "").split())
        # An unterminated quote, flow list or flow mapping is found where the file or the next token is: the
        # line to fix is where it began.
        if exc.context_mark is not None and (
            "quoted scalar" in context or "flow" in context or "end of stream" in problem
        ):
            if mark is not None and mark.line != exc.context_mark.line:
                problem = f"{problem} on line {mark.line + 1}"
            mark = exc.context_mark
            problem = f"{context}: {problem}" if context else problem
        column = f" (column {mark.column + 1})" if mark is not None else ""
        self.result.errors.append(
            ManifestError(
                label,
                "",
                f"invalid YAML{column}: {problem}",
                source=source,
                line=mark.line + 1 if mark is not None else None,
            )
        )


def _child(node: Node | None, key: str) -> Node | None:
    if not isinstance(node, MappingNode):
        return None
    return next((value for k, value in node.value if isinstance(k, ScalarNode) and k.value == key), None)


def _check_targets(result: LoadResult) -> None:
    """A ScaledObject whose scaleTargetRef names a ProcessGroup that no loaded file defines is an error.

    Only ProcessGroup targets are checked: a Deployment or StatefulSet lives in the cluster, not in the files.
    """
    for so in list(result.resources.scaled_objects()):
        target = so.spec.scale_target_ref
        if not target.is_process_group or result.resources.scale_target(so) is not None:
            continue
        known = [pg.name for pg in result.resources.process_groups(so.metadata.namespace)]
        close = difflib.get_close_matches(target.name, known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (defined: {', '.join(known)})" if known else ""
        message = f"no ProcessGroup {target.name!r} in namespace {so.metadata.namespace!r} in the loaded files{hint}"
        error = result.locate(SpecError(so.ref, "spec.scaleTargetRef.name", message), so)
        result.errors.append(error)
        result.resources.discard(so.kind, so.namespace, so.name)
        result.objects.remove(so)


def load_text(
    text: str, source: str = "<string>", *, ignore_unknown: bool = False, require_targets: bool = False
) -> LoadResult:
    """Load every document of a YAML text; `source` names it in errors.

    Unknown kinds are errors, unless `ignore_unknown` (then they are listed in `skipped`): a file meant
    for kubectl may hold the Deployment next to its ScaledObject. With `require_targets`, a ScaledObject
    scaling a ProcessGroup that is not loaded is an error (what `ebb check` and `ebb run` want).
    """
    result = LoadResult()
    _Collector(result, ignore_unknown).text(text, source)
    if require_targets:
        _check_targets(result)
    return result


def expand_paths(paths: Iterable[str | Path]) -> Iterator[Path]:
    """The files `paths` name: a directory means its *.yaml and *.yml files, in its subdirectories too (sorted;
    hidden directories such as .git are left out)."""
    for entry in paths:
        path = Path(entry)
        if path.is_dir():
            yield from sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and p.suffix in YAML_SUFFIXES
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        else:
            yield path


_expand = expand_paths


def load_files(
    paths: Iterable[str | Path], *, ignore_unknown: bool = False, require_targets: bool = False
) -> LoadResult:
    """Load YAML files (a directory means its *.yaml and *.yml files, subdirectories included) into one set.

    Objects from all files share one index, so the same object defined in two files is an error. The options
    are `load_text`'s.
    """
    result = LoadResult()
    collector = _Collector(result, ignore_unknown)
    for path in _expand(paths):
        try:
            if path.is_file() and path.stat().st_size > MAX_FILE_BYTES:
                message = f"refused: larger than {MAX_FILE_BYTES // 2**20} MiB"
                result.errors.append(ManifestError(str(path), "", message, source=str(path)))
                continue
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            message = f"cannot read file: {reason}"
            result.errors.append(ManifestError(str(path), "", message, source=str(path)))
            continue
        collector.text(text, str(path))
    if require_targets:
        _check_targets(result)
    return result
