"""Where things are written: the rule section's YAML composed once, with marks.

A Sigma rule's ``body`` is one YAML document as written. The analyzer needs the section's data
(for pySigma) *and* the position of every key and value (for spans and stage text). Composing
with libyaml's ``CSafeLoader`` gives nodes with marks; constructing the data from that same node
graph costs no second parse. Only the section block (``detection:`` up to the next top-level
key) is composed: it is about half the cost of composing the whole document.

Marks are relative to the composed text; :class:`Block` turns them into file positions:
``line = rule.line + line of the block in the body + mark.line`` and character offsets into
``body``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from ruleatlas.model import Span

# A top-level section key at column 0, and the next line that starts another top-level item.
_SECTION = {
    key: re.compile(rf"^{key}[ \t]*:", re.M) for key in ("detection", "correlation", "filter")
}
_NEXT_TOP = re.compile(r"^[^\s#]", re.M)


class BlockError(ValueError):
    """The section could not be found or composed; carries the YAML problem mark if any."""

    def __init__(self, message: str, line: int | None = None, col: int | None = None) -> None:
        self.line = line
        self.col = col
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Block:
    """One composed section: ``data`` (plain Python), ``node`` (its YAML value node) and the
    arithmetic from marks to file lines and body offsets."""

    key: str
    data: Any
    node: yaml.Node | None
    body: str
    base: int  # offset in body of the composed text
    line0: int  # file line (1-based) of the composed text's first line
    path: str | None
    exact: bool = True  # False: the text is not the file's (a collection's merged block)
    key_node: yaml.Node | None = None  # the section's key (``detection``), when composed

    def span(self, start: yaml.Node | None, end: yaml.Node | None = None) -> Span | None:
        """File span from the start of ``start`` to the end of ``end`` (or of ``start``); for
        a generated block, the rule document's first line (the best location there is)."""
        if start is None:
            return None
        if not self.exact:
            return Span(self.line0, 1, path=self.path)
        sm = start.start_mark
        em = (end or start).end_mark
        return Span(
            line=self.line0 + sm.line,
            col=sm.column + 1,
            start=self.base + sm.index,
            end=self.base + em.index,
            path=self.path,
        )

    def text(self, start: yaml.Node | None, end: yaml.Node | None = None) -> str | None:
        """The text as written from ``start`` to the end of ``end``, without trailing blank or
        comment lines (a block collection's end mark lies at the next key)."""
        if start is None:
            return None
        a = self.base + start.start_mark.index
        b = self.base + (end or start).end_mark.index
        return trim_tail(self.body[a:b])


def scalar_text(block: Block, node: yaml.Node) -> str:
    """A scalar exactly as written (quotes included): its marks are exact, nothing to trim."""
    return block.body[block.base + node.start_mark.index: block.base + node.end_mark.index]


def trim_tail(text: str) -> str:
    """Drop trailing whitespace and trailing lines that are only comments."""
    lines = text.rstrip().split("\n")
    while len(lines) > 1 and (not lines[-1].strip() or lines[-1].lstrip().startswith("#")):
        lines.pop()
    return "\n".join(lines).rstrip()


_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"


def _compose(text: str) -> tuple[Any, yaml.Node | None]:
    loader = yaml.CSafeLoader(text)
    try:
        node = loader.get_single_node()
        data = _construct(loader, node) if node is not None else None
    finally:
        loader.dispose()
    return data, node


def _construct(loader: yaml.CSafeLoader, root: yaml.Node) -> Any:
    """Plain data from the composed nodes: the same result as ``construct_document`` (strings,
    lists and dicts built directly, other scalars and unusual nodes through the loader), at
    about a third of its cost. Shared (aliased) nodes give shared objects, as in PyYAML."""
    memo: dict[int, Any] = {}

    def build(n: yaml.Node) -> Any:
        got = memo.get(id(n), memo)
        if got is not memo:
            return got
        if isinstance(n, yaml.ScalarNode):
            out = n.value if n.tag == _STR else loader.construct_object(n, deep=True)
        elif isinstance(n, yaml.SequenceNode) and n.tag == _SEQ:
            out = []
            memo[id(n)] = out
            out.extend(build(x) for x in n.value)
        elif isinstance(n, yaml.MappingNode) and n.tag == _MAP and all(
            isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge"
            for k, _ in n.value
        ):
            out = {}
            memo[id(n)] = out
            for k, v in n.value:
                out[build(k)] = build(v)
        else:
            out = loader.construct_object(n, deep=True)
        memo[id(n)] = out
        return out

    return build(root)


def _value_node(root: yaml.Node | None, key: str) -> yaml.Node | None:
    return _key_value(root, key)[1]


def _key_node(root: yaml.Node | None, key: str) -> yaml.Node | None:
    return _key_value(root, key)[0]


def _key_value(root: yaml.Node | None, key: str) -> tuple[yaml.Node | None, yaml.Node | None]:
    found: tuple[yaml.Node | None, yaml.Node | None] = (None, None)
    if isinstance(root, yaml.MappingNode):
        for k, v in root.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                found = (k, v)  # last one wins, as in the constructed dict
    return found


def locate_generated(query: str, key: str, line: int, path: str | None) -> Block:
    """The block of a generated query (a collection member merged with its global document,
    dumped as YAML by the reader): data from the query, positions only to the document."""
    try:
        data, node = _compose(query)
    except yaml.YAMLError as exc:
        raise BlockError(f"YAML error in the merged query: {exc}", line, 1) from exc
    if isinstance(data, dict) and key in data:
        return Block(key, data[key], _value_node(node, key), query, 0, line, path, exact=False)
    raise BlockError(f"no '{key}:' section in the merged query", line, 1)


def locate(body: str, key: str, line: int = 1, path: str | None = None,
           query: str | None = None) -> Block:
    """Compose the ``key`` section of ``body``; raises :class:`BlockError` when there is none.

    Fast path: the column-0 ``key:`` block alone. Fallbacks: the whole body (flow style or
    unusual layout), then the ``query`` text on its own (positions relative to where it is
    found in the body, else to the document start).
    """
    pattern = _SECTION.get(key) or re.compile(rf"^{re.escape(key)}[ \t]*:", re.M)
    m = pattern.search(body)
    if m is not None:
        nxt = _NEXT_TOP.search(body, m.end())
        start = m.start()
        end = nxt.start() if nxt else len(body)
        try:
            data, node = _compose(body[start:end])
            if isinstance(data, dict) and key in data:
                return Block(key, data[key], _value_node(node, key), body, start,
                             line + body.count("\n", 0, start), path,
                             key_node=_key_node(node, key))
        except yaml.YAMLError:
            pass  # fall back to the whole body, which reports a located error
    try:
        data, node = _compose(body)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        if query:
            try:
                return _from_query(body, key, line, path, query)
            except (yaml.YAMLError, BlockError):
                pass  # report the body's own error below
        raise BlockError(
            f"YAML error: {exc}",
            line + mark.line if mark else None,
            mark.column + 1 if mark else None,
        ) from exc
    if isinstance(data, dict) and key in data:
        return Block(key, data[key], _value_node(node, key), body, 0, line, path,
                     key_node=_key_node(node, key))
    if query:
        return _from_query(body, key, line, path, query)
    raise BlockError(f"no '{key}:' section in the rule")


def _from_query(body: str, key: str, line: int, path: str | None, query: str) -> Block:
    data, node = _compose(query)
    off = max(body.find(query), 0)
    if isinstance(data, dict) and key in data:  # the query text includes its "key:" line
        data, node = data[key], _value_node(node, key)
    elif not isinstance(data, dict):
        raise BlockError(f"no '{key}:' section in the rule")
    return Block(key, data, node, body if off or body.startswith(query) else query, off,
                 line + body.count("\n", 0, off), path)


def mapping_pairs(node: yaml.Node | None) -> dict[Any, tuple[yaml.Node, yaml.Node]]:
    """Key -> (key node, value node) of a mapping node, keyed by the constructed key value
    (last duplicate wins, as in the constructed dict)."""
    out: dict[Any, tuple[yaml.Node, yaml.Node]] = {}
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            out[k.value if isinstance(k, yaml.ScalarNode) else id(k)] = (k, v)
    return out


def sequence_items(node: yaml.Node | None) -> list[yaml.Node]:
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []
