"""YAML → plain values checked against a JSON Schema, every value keeping its FILE:LINE:COL mark."""
from __future__ import annotations

import difflib
import ipaddress
import re
from typing import Any, Dict, List, Optional, Tuple

import yaml

from .diagnostics import Mark, Report

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
INVALID = object()  # a value that failed its schema; callers treat it as absent
_MAX_NODES_PER_BYTE = 50  # aliases may not blow a profile up beyond this (billion laughs)
# Nor may the nodes that aliases repeat be more than this many times the nodes written (at least
# _MIN_REPEATS): a 6 KB alias bomb stops at once, `<<: *defaults` in every host of a fleet does not.
_REPEATS_PER_NODE = 10
_MIN_REPEATS = 10000


def matches(pattern: str, text: str) -> bool:
    """`text` matches the schema's `pattern` from its start (re.match, as before), and to its very end
    when the pattern ends with `$`: Python's `$` also matches before a final newline, and a name or
    value such as "net0\\n" must not pass for "net0" (it would reach file names and the runbook)."""
    found = re.match(pattern, text)
    if found is None:
        return False
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        return found.end() == len(text)
    return True


class LMap(dict):
    """A mapping that remembers where it, its keys and its values were written."""

    def __init__(self, mark: Mark):
        super().__init__()
        self.mark = mark
        self.key_marks: Dict[str, Mark] = {}
        self.value_marks: Dict[str, Mark] = {}

    def at(self, key: str) -> Mark:
        return self.value_marks.get(key, self.mark)


class LList(list):
    """A sequence that remembers where it and its items were written."""

    def __init__(self, mark: Mark):
        super().__init__()
        self.mark = mark
        self.item_marks: List[Mark] = []


def _own(text: str) -> str:
    """A copy of a node's text made now. The composer allocates each text amid its nodes: a profile
    that kept those objects would keep most of the node tree's memory pages after it is freed (a
    1,000-host fleet: 285 MiB instead of 180), and a build's forked workers would copy them."""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "surrogatepass")


def mark_of(node: yaml.Node) -> Mark:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def read_text(path: str, report: Report) -> Optional[str]:
    from . import safeio

    try:
        data = safeio.read_bounded(path, safeio.PROFILE_LIMIT, "profile")
    except safeio.UnsafeInput as exc:
        report.error(None, exc.reason)
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        report.error((line, 1), "profile is not UTF-8 text")
        return None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        report.error((line, 1), "profile contains a NUL byte (binary file?)")
        return None
    return text


def compose(text: str, report: Report) -> Optional[yaml.Node]:
    """Parse YAML into nodes (which keep their marks); YAML errors become located diagnostics."""
    try:
        loader = _Loader(text)
        try:
            return loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = (mark.line + 1, mark.column + 1) if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        report.error(where, f"YAML syntax: {problem}")
    except yaml.reader.ReaderError as exc:  # control characters: a position, not a mark
        before = text[: exc.position]
        code = exc.character if isinstance(exc.character, int) else ord(exc.character or "?")
        report.error((before.count("\n") + 1, len(before) - before.rfind("\n")),
                     f"YAML syntax: character {code:#x} is not allowed ({exc.reason})")
    except yaml.YAMLError as exc:
        report.error(None, f"YAML syntax: {exc}".splitlines()[0])
    return None


class Walker:
    """Converts nodes according to the schema, reporting every problem with its mark."""

    def __init__(self, report: Report, budget: int, repeats: int = -1,
                 constructor: Optional[yaml.SafeLoader] = None, more_repeats: Optional[List[Any]] = None):
        self.report = report
        self.budget = budget
        self.repeats = repeats if repeats >= 0 else budget  # visits of a node already visited (aliases)
        # [more(visited) → (further repeats allowed, whether that is all), or None once it is all]:
        # shared with the probes of `oneOf`, asked when `repeats` runs out (see load_document).
        self._more = more_repeats if more_repeats is not None else [None]
        self._visited: set = set()
        self._exhausted = False
        # Only for its scalar constructors and merge keys; one per document, shared with the probes of
        # `oneOf` (a pure-Python loader per probe cost more than the whole conversion).
        self._constructor = constructor or yaml.SafeLoader("")

    def convert(self, node: yaml.Node, schema: Dict[str, Any], where: str) -> Any:
        self.budget -= 1
        if id(node) in self._visited:
            self.repeats -= 1
            if self.repeats < 0 and self._more[0] is not None:
                granted, final = self._more[0](len(self._visited))
                self.repeats += granted
                if final:
                    self._more[0] = None
        else:
            self._visited.add(id(node))
        if self.budget < 0 or self.repeats < 0:
            if not self._exhausted:
                self._exhausted = True
                why = "aliases repeat" if self.repeats < 0 else "it expands to"
                self.report.error(mark_of(node), f"profile is too large once aliases are expanded ({why} "
                                                 "too many values); refusing it (an alias bomb?)")
            return INVALID
        if "oneOf" in schema:
            return self._one_of(node, schema, where)
        kind = schema.get("type")
        if kind == "array" and _is_null(node):
            return None
        if kind == "object" and _is_null(node):
            # "br0:" with nothing after it is an empty mapping: still subject to its required keys.
            empty = LMap(mark_of(node))
            for key in schema.get("required", ()):
                self.report.error(empty.mark, f"{where or 'profile'}: missing required key '{key}'")
            return empty
        return _HANDLERS[kind](self, node, schema, where)

    def _one_of(self, node: yaml.Node, schema: Dict[str, Any], where: str) -> Any:
        for option in schema["oneOf"]:
            probe = Walker(Report(self.report.file), self.budget, self.repeats, self._constructor, self._more)
            probe._visited = self._visited
            value = probe.convert(node, option, where)
            # A failed option's visits count too: or each alternative would get the whole budget again.
            self.budget, self.repeats = probe.budget, probe.repeats
            if probe._exhausted:
                self._exhausted = True
                for diag in probe.report.errors:
                    if "alias" in diag.message:
                        self.report.error((diag.line, diag.col), diag.message)
                return INVALID
            if not probe.report.errors:
                return value
        shaped = [o for o in schema["oneOf"] if o.get("type") == _SHAPES.get(type(node))]
        if len(shaped) == 1:  # a mapping (or list) where only one alternative takes one: its own errors say why
            return self.convert(node, shaped[0], where)
        kinds = " or ".join(_describe(o) for o in schema["oneOf"])
        self.report.error(mark_of(node), f"{where}: expected {kinds}")
        return INVALID

    def _object(self, node: yaml.Node, schema: Dict[str, Any], where: str) -> Any:
        if not isinstance(node, yaml.MappingNode):
            self.report.error(mark_of(node), f"{where}: expected a mapping, got {_node_kind(node)}")
            return INVALID
        own = {id(key) for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge"}
        try:
            self._constructor.flatten_mapping(node)
        except yaml.MarkedYAMLError as exc:
            self.report.error(mark_of(node), f"{where}: bad merge key: {exc.problem}")
            return INVALID
        result = LMap(mark_of(node))
        merged_only: set = set()
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        name_pattern = schema.get("propertyNames", {}).get("pattern")
        for key_node, value_node in node.value:
            key_mark = mark_of(key_node)
            if not isinstance(key_node, yaml.ScalarNode) or _is_null(key_node):
                self.report.error(key_mark, f"{where}: keys must be plain names")
                continue
            key = _own(key_node.value)
            if key in result.key_marks and id(key_node) in own and key in merged_only:
                merged_only.discard(key)  # a key written here overrides the one merged in with '<<'
                result.pop(key, None)
            elif key in result.key_marks:
                first = result.key_marks[key]
                self.report.error(key_mark, f"{where}: duplicate key '{_show(key)}' (first at line {first[0]})")
                continue
            if id(key_node) not in own:
                merged_only.add(key)
            result.key_marks[key] = key_mark
            result.value_marks[key] = mark_of(value_node)
            if key in props:
                sub = props[key]
            elif extra is False:
                self.report.error(key_mark, f"{where}: unknown key '{_show(key)}'{_suggest(key, props)}")
                continue
            else:
                sub = extra
                if name_pattern and not matches(name_pattern, key):
                    self.report.error(key_mark, f"{where}: invalid name '{_show(key)}': must match {name_pattern}")
                    continue
                if len(key.encode("utf-8")) > 64 and "{0,14}" not in name_pattern:
                    self.report.error(key_mark, f"{where}: name '{_show(key)}' is longer than 64 bytes")
                    continue
            value = self.convert(value_node, sub, f"{where}.{key}" if where else key)
            if value is not INVALID:
                result[key] = value
        for key in schema.get("required", ()):
            if key not in result.key_marks:
                self.report.error(result.mark, f"{where or 'profile'}: missing required key '{key}'")
        return result

    def _array(self, node: yaml.Node, schema: Dict[str, Any], where: str) -> Any:
        if not isinstance(node, yaml.SequenceNode):
            self.report.error(mark_of(node), f"{where}: expected a list, got {_node_kind(node)}")
            return INVALID
        result = LList(mark_of(node))
        count = len(node.value)
        if count < schema.get("minItems", 0) or count > schema.get("maxItems", count):
            low, high = schema.get("minItems", 0), schema.get("maxItems")
            size = f"exactly {low}" if low == high else f"at most {high}" if high is not None else f"at least {low}"
            self.report.error(mark_of(node), f"{where}: expected {size} items, got {count}")
            return INVALID
        for index, item in enumerate(node.value):
            value = self.convert(item, schema["items"], f"{where}[{index}]")
            if value is not INVALID:
                result.append(value)
                result.item_marks.append(mark_of(item))
        return result

    def _scalar(self, node: yaml.Node, where: str, wanted: str) -> Optional[str]:
        if not isinstance(node, yaml.ScalarNode):
            self.report.error(mark_of(node), f"{where}: expected {wanted}, got {_node_kind(node)}")
            return None
        if _is_null(node):
            self.report.error(mark_of(node), f"{where}: expected {wanted}, got nothing")
            return None
        return _own(node.value)

    def _string(self, node: yaml.Node, schema: Dict[str, Any], where: str) -> Any:
        # The raw text is kept, so an unquoted MAC such as 52:54:00:12:34:56 is not read as a
        # YAML 1.1 sexagesimal number.
        text = self._scalar(node, where, "a string")
        if text is None:
            return INVALID
        mark = mark_of(node)
        if "enum" in schema and text not in schema["enum"]:
            self.report.error(mark, f"{where}: '{_show(text)}' is not one of {', '.join(schema['enum'])}"
                              f"{_suggest(text, schema['enum'])}")
            return INVALID
        if len(text.encode("utf-8")) > schema.get("maxLength", 1 << 20):
            self.report.error(mark, f"{where}: longer than {schema['maxLength']} bytes")
            return INVALID
        fmt = schema.get("format")
        if fmt == "ipv4":
            return self._parse(mark, where, text, ipaddress.IPv4Address, "an IPv4 address")
        if fmt == "ipv4-interface":
            if "/" not in text:
                self.report.error(mark, f"{where}: '{_show(text)}' needs a prefix, e.g. {_show(text)}/24")
                return INVALID
            return self._parse(mark, where, text, ipaddress.IPv4Interface, "an IPv4 address/prefix")
        if fmt == "ip":
            return self._parse(mark, where, text, ipaddress.ip_address, "an IPv4 or IPv6 address")
        if fmt == "ip-interface":
            return self._parse(mark, where, text, ipaddress.ip_interface, "an IPv4 or IPv6 address/prefix")
        if "pattern" in schema and not matches(schema["pattern"], text):
            self.report.error(mark, f"{where}: invalid value '{_show(text)}': {schema.get('description', '')}")
            return INVALID
        return text

    def _parse(self, mark: Mark, where: str, text: str, kind: Any, wanted: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            self.report.error(mark, f"{where}: '{_show(text)}' is not {wanted}")
            return INVALID

    def _integer(self, node: yaml.Node, schema: Dict[str, Any], where: str) -> Any:
        text = self._scalar(node, where, "an integer")
        if text is None:
            return INVALID
        mark = mark_of(node)
        if node.tag != "tag:yaml.org,2002:int":
            self.report.error(mark, f"{where}: expected an integer, got '{_show(text)}'")
            return INVALID
        try:
            value = self._constructor.construct_yaml_int(node)
        except (ValueError, yaml.YAMLError):
            self.report.error(mark, f"{where}: expected an integer, got '{_show(text)}'")
            return INVALID
        if "const" in schema and value != schema["const"]:
            self.report.error(mark, f"{where}: only {schema['const']} is supported, got {value}")
            return INVALID
        low, high = schema.get("minimum"), schema.get("maximum")
        if (low is not None and value < low) or (high is not None and value > high):
            self.report.error(mark, f"{where}: {value} is out of range {low}..{high}")
            return INVALID
        return value

    def _boolean(self, node: yaml.Node, schema: Dict[str, Any], where: str) -> Any:
        text = self._scalar(node, where, "true or false")
        if text is None:
            return INVALID
        if node.tag != "tag:yaml.org,2002:bool":
            self.report.error(mark_of(node), f"{where}: expected true or false, got '{_show(text)}'")
            return INVALID
        return self._constructor.construct_yaml_bool(node)


# The converter of each schema type (looked up for every node: one table, not a dict of bound methods
# made per node).
_HANDLERS = {"object": Walker._object, "array": Walker._array, "string": Walker._string,
             "integer": Walker._integer, "boolean": Walker._boolean}


def load_document(path: str, schema: Dict[str, Any], report: Report) -> Optional[LMap]:
    """Read, parse and structurally check a profile; None when nothing usable came out."""
    text = read_text(path, report)
    if text is None:
        return None
    node = compose(text, report)
    if node is None:
        if not report.errors:
            report.error((1, 1), "profile is empty")
        return None
    # Aliases (and the failed options of a oneOf) may repeat max(_MIN_REPEATS, _REPEATS_PER_NODE × the
    # document's nodes) nodes. The nodes visited so far are a lower bound of the document's: while the
    # repeats stay within _REPEATS_PER_NODE × those, the document is not counted (a walk of every node,
    # a tenth of a fleet's load).
    allowed = [_MIN_REPEATS]

    def more(visited: int) -> Tuple[int, bool]:
        bound, final = _REPEATS_PER_NODE * visited, False
        if bound <= allowed[0]:
            bound, final = _REPEATS_PER_NODE * _count_nodes(node), True
        granted = max(0, bound - allowed[0])
        allowed[0] += granted
        return granted, final

    walker = Walker(report, budget=max(10000, _MAX_NODES_PER_BYTE * len(text)), repeats=_MIN_REPEATS,
                    more_repeats=[more])
    value = walker.convert(node, schema, "")
    return value if isinstance(value, LMap) else None


def _count_nodes(root: yaml.Node) -> int:
    """How many distinct nodes the document holds (an alias is not a node of its own)."""
    seen = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.extend((key, value))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return len(seen)


_SHAPES = {yaml.MappingNode: "object", yaml.SequenceNode: "array"}


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _node_kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return f"'{_show(node.value)}'"


def _describe(schema: Dict[str, Any]) -> str:
    return {"object": "a mapping", "array": "a list", "string": "a name"}.get(schema.get("type", ""), "a value")


def _suggest(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _show(text: str, limit: int = 60) -> str:
    """A profile value made safe to print in one line of a message."""
    shown = text.encode("unicode_escape").decode("ascii")
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."
