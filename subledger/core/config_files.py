"""Reading the YAML (or JSON) settings and mapping files users write, with errors that name the fix.

One loader for every settings file subledger reads (sync settings ``subledger.yaml``, the
service settings ``service.yaml``, connector mapping files, the chart of accounts):

* the file is read as UTF-8 (a byte-order mark is fine); a byte that is not UTF-8 is
  refused naming its line;
* YAML is read with :class:`StrictLoader`: a safe loader that refuses a key written twice
  in one mapping (YAML would silently keep the last), aliases that expand a document by
  more than :data:`MAX_ALIAS_NODES` values (an "alias bomb"), an alias inside its own
  anchor (a recursive value), and values nested more than :data:`MAX_DEPTH` levels deep;
* JSON is refused the same way: a key twice in one object, or nesting too deep;
* :func:`load_settings_file` validates the document with a strict pydantic model
  (``extra="forbid"``), so an unknown key (``notifers:``) is refused with the key, the
  file, its line and the fix (the closest known key), never silently ignored.

The contract-file readers (:mod:`subledger.core.terms.parsing`) and the files connector
use the same loader, with floats read as exact decimals.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.scanner import ScannerError

from subledger.core.errors import ConfigError

MAX_DEPTH = 64
"""How deeply values may nest in a settings, mapping or data file (a document's top level is 1)."""

MAX_ALIAS_NODES = 10_000
"""How many values YAML aliases (``*name``) may add to one document, in total."""

MERGE_TAG = "tag:yaml.org,2002:merge"


class DuplicateKeyError(ConstructorError):
    """A mapping holds the same key twice (YAML would keep the last one silently)."""

    def __init__(self, key: Any, first_line: int, mark: Any, context_mark: Any = None) -> None:
        super().__init__("while reading a mapping", context_mark,
                         f"the key {_short(key)} appears twice (first on line {first_line})", mark)
        self.key = key
        self.first_line = first_line


class StrictLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses duplicate keys, alias bombs, recursive aliases and deep nesting.

    Everything it refuses raises a :class:`yaml.MarkedYAMLError` (a ``ComposerError`` or a
    :class:`DuplicateKeyError`) whose ``problem_mark`` is where the problem is.
    """

    max_depth = MAX_DEPTH
    max_alias_nodes = MAX_ALIAS_NODES

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._reset_limits()

    def fetch_flow_collection_start(self, token_class: Any) -> None:
        # Refused while scanning: the scanner's work grows with the square of the flow depth.
        if self.flow_level >= self.max_depth:
            raise ScannerError(None, None, f"values are nested more than {self.max_depth} levels deep",
                               self.get_mark())
        super().fetch_flow_collection_start(token_class)

    def _reset_limits(self) -> None:
        self._depth = 0
        self._open_anchors: set[str] = set()
        self._alias_nodes = 0
        self._measured: dict[int, tuple[int, int]] = {}

    def compose_document(self) -> Any:
        self._reset_limits()
        return super().compose_document()

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            if event.anchor in self._open_anchors:
                raise ComposerError(None, None, f"the alias *{event.anchor} is inside its own anchor "
                                    "&{0} (a value that contains itself)".format(event.anchor), event.start_mark)
            node = super().compose_node(parent, index)
            size, depth = self._measure(node)
            self._alias_nodes += size
            if self._alias_nodes > self.max_alias_nodes:
                raise ComposerError(None, None, f"aliases repeat more than {self.max_alias_nodes} values "
                                    "in this document (an alias bomb?)", event.start_mark)
            if self._depth + depth > self.max_depth:
                raise ComposerError(None, None, f"the alias *{event.anchor} nests values more than "
                                    f"{self.max_depth} levels deep", event.start_mark)
            return node
        self._depth += 1
        if self._depth > self.max_depth:
            raise ComposerError(None, None, f"values are nested more than {self.max_depth} levels deep",
                                event.start_mark)
        anchor = getattr(event, "anchor", None)
        if anchor:
            self._open_anchors.add(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            if anchor:
                self._open_anchors.discard(anchor)

    def _measure(self, node: Node) -> tuple[int, int]:
        """(values in ``node`` with every alias expanded, its depth), memoized per node."""
        known = self._measured.get(id(node))
        if known is not None:
            return known
        size, depth = 1, 1
        if isinstance(node, SequenceNode):
            children: list[Node] = list(node.value)
        elif isinstance(node, MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = []
        for child in children:
            child_size, child_depth = self._measure(child)
            size += child_size
            depth = max(depth, child_depth + 1)
        self._measured[id(node)] = (size, depth)
        return size, depth

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        # Checked before SafeConstructor merges ``<<: *base`` keys in, so a key written here
        # may still override a merged one; checked once (merging rewrites node.value).
        if isinstance(node, MappingNode) and not getattr(node, "_keys_checked", False):
            seen: dict[Any, Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == MERGE_TAG or not isinstance(key_node, ScalarNode):
                    continue
                key = self.construct_object(key_node)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:  # an unhashable key: SafeConstructor refuses it itself
                    continue
                if first is not key_node:
                    raise DuplicateKeyError(key, first.start_mark.line + 1, key_node.start_mark, node.start_mark)
            node._keys_checked = True  # type: ignore[attr-defined]
        return super().construct_mapping(node, deep=deep)



def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- JSON ----------------------------------------------------------------------------------


class JsonKeys:
    """An ``object_pairs_hook`` that builds dicts and remembers keys written twice in one object."""

    __slots__ = ("duplicates",)

    def __init__(self) -> None:
        self.duplicates: list[str] = []

    def __call__(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result = dict(pairs)
        if len(result) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    self.duplicates.append(key)
                    break
                seen.add(key)
        return result


def nesting_depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """How deeply ``value`` nests lists and mappings (a scalar is 0); stops counting past ``limit``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


def parse_json_text(text: str, *, source: str, parse_float: Callable[[str], Any] | None = None) -> Any:
    """Parse JSON, refusing a key twice in one object and nesting beyond :data:`MAX_DEPTH`.

    Raises:
        ConfigError: naming ``source``, the line and column where it can, and the fix.
    """
    keys = JsonKeys()
    try:
        value = json.loads(text, parse_float=parse_float, object_pairs_hook=keys)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg})",
                          fix="correct the JSON syntax at that line") from None
    except RecursionError:
        raise ConfigError(f"{source}: values are nested more than {MAX_DEPTH} levels deep",
                          fix=f"nest objects and lists at most {MAX_DEPTH} levels deep") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise ConfigError(f"{source}: not valid JSON ({exc})", fix="write numbers as plain digits") from None
    if keys.duplicates:
        key = keys.duplicates[0]
        raise ConfigError(f"{source}: the key {key!r} appears twice in one object",
                          fix=f"keep one {key!r} in each object (JSON readers would silently keep the last)")
    if nesting_depth(value) > MAX_DEPTH:
        raise ConfigError(f"{source}: values are nested more than {MAX_DEPTH} levels deep",
                          fix=f"nest objects and lists at most {MAX_DEPTH} levels deep")
    return value


# --- YAML ------------------------------------------------------------------------------------


def yaml_error(exc: yaml.YAMLError, source: str) -> ConfigError:
    """A :class:`ConfigError` for a YAML problem, naming the file, line and column, and the fix."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
    problem = getattr(exc, "problem", None) or str(exc)
    if isinstance(exc, DuplicateKeyError):
        fix = f"keep one {_short(exc.key)} in this mapping (YAML would silently keep the last)"
    elif isinstance(exc, ComposerError) and "alias" in problem:
        fix = "write the values out instead of repeating them with aliases (*name)"
    elif isinstance(exc, ComposerError | ScannerError) and "nested" in problem:
        fix = f"nest mappings and lists at most {MAX_DEPTH} levels deep"
    elif isinstance(exc, yaml.reader.ReaderError):
        fix = "remove the control character, or save the file as UTF-8 text"
    else:
        fix = "correct the YAML syntax at that line (check indentation and quoting)"
    return ConfigError(f"{where}: not valid YAML ({problem})", fix=fix)


def compose_yaml(text: str, *, source: str, loader: type[StrictLoader] = StrictLoader) -> tuple[Any, Node | None]:
    """Parse one YAML document strictly: its value and its node (to find the line of a key).

    Raises:
        ConfigError: the text is not valid YAML, or is refused (see :class:`StrictLoader`).
    """
    try:
        parser = loader(text)
    except yaml.YAMLError as exc:  # the reader refuses control characters before parsing
        raise yaml_error(exc, source) from None
    try:
        node = parser.get_single_node()
        value = parser.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise yaml_error(exc, source) from None
    except RecursionError:
        raise ConfigError(f"{source}: values are nested more than {MAX_DEPTH} levels deep",
                          fix=f"nest mappings and lists at most {MAX_DEPTH} levels deep") from None
    finally:
        parser.dispose()
    return value, node


def parse_yaml_text(text: str, *, source: str, loader: type[StrictLoader] = StrictLoader) -> Any:
    """Parse one YAML document strictly (see :func:`compose_yaml`)."""
    return compose_yaml(text, source=source, loader=loader)[0]


def line_of(node: Node | None, loc: Sequence[int | str]) -> int | None:
    """The line (1-based) of the value at ``loc`` inside a composed YAML document, if known.

    For a key that should not be there, the line of the key itself.
    """
    if node is None:
        return None
    line = node.start_mark.line + 1
    for segment in loc:
        if isinstance(node, MappingNode):
            match = next(((k, v) for k, v in node.value if isinstance(k, ScalarNode) and k.value == str(segment)),
                         None)
            if match is None:
                return line
            key, node = match
            line = key.start_mark.line + 1
        elif isinstance(node, SequenceNode) and isinstance(segment, int) and 0 <= segment < len(node.value):
            node = node.value[segment]
            line = node.start_mark.line + 1
        else:
            return line
    return line


# --- Files -------------------------------------------------------------------------------------


def decode_text(data: bytes, *, source: str) -> str:
    """UTF-8 text of a file's bytes (a byte-order mark is dropped).

    Raises:
        ConfigError: a byte is not UTF-8, naming its line.
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{source}:{line}: byte {exc.start + 1} is not UTF-8 ({exc.reason})",
                          fix="save the file as UTF-8") from None


def read_text_file(path: str | Path, *, what: str, missing_fix: str) -> tuple[Path, str]:
    """The file and its UTF-8 text.

    Raises:
        ConfigError: the file is missing, unreadable, or not UTF-8.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"{what} {file} does not exist", fix=missing_fix)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what} {file} cannot be read: {exc.strerror or exc}",
                          fix="check the path and its permissions") from None
    return file, decode_text(data, source=f"{what} {file}")


def is_json(file: Path) -> bool:
    return file.suffix.lower() == ".json"


def read_document(path: str | Path, *, what: str, missing_fix: str) -> tuple[Path, Any, Node | None]:
    """Read and strictly parse a YAML or JSON file (JSON by the ``.json`` suffix).

    Returns:
        The file, its top-level value (None for an empty file), and its YAML node (None for JSON).
    """
    file, text = read_text_file(path, what=what, missing_fix=missing_fix)
    source = f"{what} {file}"
    if is_json(file):
        return file, (parse_json_text(text, source=source) if text.strip() else None), None
    value, node = compose_yaml(text, source=source)
    return file, value, node


def read_mapping_file(path: str | Path, *, what: str, missing_fix: str, shape_fix: str) -> dict[str, Any]:
    """The top-level mapping of a YAML or JSON file (JSON by the ``.json`` suffix), read strictly.

    Args:
        path: the file.
        what: how the error names the file, e.g. ``"Salesforce mapping file"``.
        missing_fix: what to do when the file does not exist.
        shape_fix: what to do when the file holds something other than a mapping.

    Raises:
        ConfigError: the file is missing, unreadable, not UTF-8, not valid YAML/JSON
            (including a key written twice, an alias bomb, or nesting too deep), or not a mapping.
    """
    file, loaded, _ = read_document(path, what=what, missing_fix=missing_fix)
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{what} {file} must hold a mapping", fix=shape_fix)
    return loaded


# --- Settings ------------------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)


def known_keys(model: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    """The keys a strict model accepts at ``loc`` (the location of an unknown key)."""
    current: Any = model
    for segment in loc[:-1]:
        if isinstance(segment, int):
            continue
        field = getattr(current, "model_fields", {}).get(segment)
        if field is None:
            return []
        current = _model_of(field.annotation)
        if current is None:
            return []
    return list(getattr(current, "model_fields", {}))


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def unknown_key_fix(key: str, known: Sequence[str], docs: str) -> str:
    """The fix for an unknown key: the closest known key, else the list of known keys."""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}? Rename {key!r} to {close[0]!r}, or remove it (see {docs})"
    listed = ", ".join(known) if known else "none here"
    return f"remove {key!r} or correct its spelling; the keys here are: {listed} (see {docs})"


def settings_error(exc: ValidationError, model: type[BaseModel], *, source: str, node: Node | None,
                   docs: str) -> ConfigError:
    """One :class:`ConfigError` naming every problem of a settings file: key path, line, fix."""
    found: list[tuple[int, str, str]] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        path = ".".join(str(p) for p in loc) or "(top level)"
        line = line_of(node, loc)
        where = f"line {line}: " if line is not None else ""
        if err["type"] == "extra_forbidden":
            key = str(loc[-1]) if loc else "?"
            fix = unknown_key_fix(key, known_keys(model, loc), docs)
            found.append((line or 0, f"{where}unknown key {path!r}", fix))
        else:
            message = err["msg"].removeprefix("Value error, ")
            found.append((line or 0, f"{where}{path}: {message}", f"correct {path} (see {docs})"))
    found.sort(key=lambda item: item[0])
    problems = [problem for _, problem, _ in found]
    fixes = [fix for _, _, fix in found]
    count = len(problems)
    head = f"{source}: " + (f"{count} problems: " if count > 1 else "")
    return ConfigError(head + "; ".join(problems), fix="; ".join(dict.fromkeys(fixes)))


def load_settings_file(path: str | Path, model: type[M], *, what: str, docs: str,
                       missing_fix: str = "create it, or point the setting at an existing file",
                       shape_fix: str | None = None) -> M:
    """Read a YAML or JSON settings file and validate it with a strict pydantic ``model``.

    The model must refuse unknown keys (``model_config = ConfigDict(extra="forbid")``, also
    on its nested models): a misspelt key is an error naming the key, the file, its line
    and the closest known key, never a setting silently ignored.

    Args:
        path: the file; a missing file is an error (callers that default when it is absent
            check first).
        model: the strict settings model.
        what: how errors name the file (``"settings file"``).
        docs: where the settings are documented (``"docs/sync.md"``), named in fixes.

    Raises:
        ConfigError: the file is missing, unreadable, not UTF-8, not valid YAML/JSON, or
            holds an unknown key or a bad value.
    """
    file, loaded, node = read_document(path, what=what, missing_fix=missing_fix)
    source = f"{what} {file}"
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{source} must hold a mapping of settings",
                          fix=shape_fix or f"write the settings as KEY: VALUE lines (see {docs})")
    try:
        return model.model_validate(loaded)
    except ValidationError as exc:
        raise settings_error(exc, model, source=source, node=node, docs=docs) from None


def check_keys(data: Mapping[str, Any], known: Sequence[str], *, where: str, source: str, docs: str) -> None:
    """Refuse a key of ``data`` not in ``known`` (for settings read without a pydantic model).

    Raises:
        ConfigError: naming the key, where it is (``accounts``), the file and the fix.
    """
    for key in data:
        if key not in known:
            place = f"{where}." if where else ""
            raise ConfigError(f"{source}: unknown key {place}{key}",
                              fix=unknown_key_fix(str(key), list(known), docs))


__all__ = [
    "MAX_ALIAS_NODES",
    "MAX_DEPTH",
    "DuplicateKeyError",
    "JsonKeys",
    "StrictLoader",
    "check_keys",
    "compose_yaml",
    "decode_text",
    "line_of",
    "load_settings_file",
    "nesting_depth",
    "parse_json_text",
    "parse_yaml_text",
    "read_document",
    "read_mapping_file",
    "read_text_file",
    "settings_error",
    "unknown_key_fix",
    "yaml_error",
]
