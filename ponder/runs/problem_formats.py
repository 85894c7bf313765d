"""The formats of a problem file, parsed into raw rows: JSONL, a JSON array, or YAML (a list,
or a mapping with a `problems:` list). Each row comes with the line it starts on, for errors.

A problem file is hostile until proven otherwise, so parsing is bounded before rows are built:
- a JSONL line, or a whole JSON-array or YAML file, over `UNPARSED_FACTOR` times the field
  limit is refused before it is parsed, and a JSONL file is read a line at a time;
- YAML aliases are refused (a few hundred bytes of them expand to gigabytes), and so is
  nesting deeper than `MAX_DEPTH` levels;
- a YAML key given twice in one mapping is refused, not settled silently for the last.

What makes a row a `Problem` is `problem_rows`' business, not this module's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import yaml

from ponder.runs.problem_rows import MAX_DEPTH

# What is refused unparsed, in fields' worth: a row of the known fields at their largest fits.
UNPARSED_FACTOR = 16


def read_rows(path: Path, file: IO[bytes], max_field_bytes: int,
              errors: list[str]) -> Iterator[tuple[int, str, Any]]:
    """(line, default id, raw row) for each row of `file`, in the format its name (or, with
    none, its first character) says; syntax errors go to `errors`, one line each."""
    limit = UNPARSED_FACTOR * max_field_bytes
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        text = _read_whole(path, file, limit, "a YAML", errors)
        if text is not None:
            yield from _yaml_rows(path, text, errors)
    elif suffix == ".json" or (suffix not in (".jsonl", ".ndjson") and _first_char(file) == b"["):
        text = _read_whole(path, file, limit, "a JSON-array", errors)
        if text is not None:
            yield from _json_array_rows(path, text, errors)
    else:
        yield from _jsonl_rows(path, file, limit, errors)


def _first_char(file: IO[bytes]) -> bytes:
    """The file's first non-blank byte; the file is left at its start."""
    try:
        while chunk := file.read(1 << 16):
            if stripped := chunk.lstrip():
                return stripped[:1]
        return b""
    finally:
        file.seek(0)


def _read_whole(path: Path, file: IO[bytes], limit: int, kind: str,
                errors: list[str]) -> str | None:
    """The text of a file parsed as a whole, refused unread when it is over `limit` bytes."""
    data = file.read(limit + 1)
    if len(data) > limit:
        errors.append(f"{path}: larger than {limit:,} bytes, the most {kind} file may hold "
                      f"({UNPARSED_FACTOR} x --max-field-bytes); write it as JSONL, which is "
                      "read a line at a time, or raise --max-field-bytes")
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        errors.append(f"{path}: not UTF-8 text: {exc.reason}")
        return None


def _jsonl_rows(path: Path, file: IO[bytes], limit: int,
                errors: list[str]) -> Iterator[tuple[int, str, Any]]:
    for number, (raw, size) in enumerate(_bounded_lines(file, limit), start=1):
        if raw is None:
            errors.append(f"{path}:{number}: line of {size:,} bytes, over the limit of "
                          f"{limit:,} ({UNPARSED_FACTOR} x --max-field-bytes); not parsed")
            continue
        if not raw.strip():
            continue
        try:
            line = raw.removesuffix(b"\n").removesuffix(b"\r").decode("utf-8")
        except UnicodeDecodeError as exc:
            errors.append(f"{path}:{number}: not UTF-8 text: {exc.reason}")
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f"{path}:{number}: malformed JSON: {exc.msg} (column {exc.colno})")
            continue
        except (ValueError, RecursionError) as exc:
            errors.append(f"{path}:{number}: malformed JSON: {_reason(exc)}")
            continue
        yield number, str(number), row


def _bounded_lines(file: IO[bytes], limit: int) -> Iterator[tuple[bytes | None, int]]:
    """Each line of `file` with its size; a line over `limit` bytes comes as None, its bytes
    skipped rather than held, so a huge line costs neither memory nor parsing."""
    while line := file.readline(limit + 1):
        if len(line) <= limit or line.endswith(b"\n"):
            yield line, len(line)
            continue
        size = len(line)
        while (more := file.readline(1 << 20)) and not more.endswith(b"\n"):
            size += len(more)
        yield None, size + len(more)


def _json_array_rows(path: Path, text: str, errors: list[str]) -> Iterator[tuple[int, str, Any]]:
    """Each item of a JSON array with the line it starts on (decoded item by item for that)."""
    decoder = json.JSONDecoder()
    start = len(text) - len(text.lstrip())
    if text[start : start + 1] != "[":
        errors.append(f"{path}:1: malformed JSON: expected an array of problems")
        return
    pos, index = start + 1, 0
    while True:
        pos = _skip_space(text, pos)
        if text[pos : pos + 1] == "]":
            return
        try:
            row, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            errors.append(f"{path}:{exc.lineno}: malformed JSON: {exc.msg} (column {exc.colno})")
            return
        except (ValueError, RecursionError) as exc:
            line = text.count("\n", 0, pos) + 1
            errors.append(f"{path}:{line}: malformed JSON: {_reason(exc)}")
            return
        index += 1
        yield text.count("\n", 0, pos) + 1, str(index), row
        pos = _skip_space(text, end)
        if text[pos : pos + 1] == ",":
            pos += 1
        elif text[pos : pos + 1] != "]":
            line = text.count("\n", 0, pos) + 1
            errors.append(f"{path}:{line}: malformed JSON: expected ',' or ']' after item {index}")
            return


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


# libyaml where it is installed: the pure-Python parser takes seconds a megabyte.
_YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _yaml_rows(path: Path, text: str, errors: list[str]) -> Iterator[tuple[int, str, Any]]:
    """A YAML list of problems (or a mapping with a `problems:` list), with each item's line."""
    loader = _YAML_LOADER(text)
    try:
        node = loader.get_single_node()
        if node is not None and (alias := _first_alias(node)) is not None:
            errors.append(f"{path}:{alias.start_mark.line + 1}: malformed YAML: the value "
                          "anchored here is repeated by an alias (*name); aliases are not "
                          "allowed in problem files, write the value out")
            return
        if node is not None and (twice := _duplicate_key(node)) is not None:
            again, first = twice
            errors.append(f"{path}:{again.start_mark.line + 1}: malformed YAML: key "
                          f"{again.value!r} given twice in one mapping (first on line "
                          f"{first.start_mark.line + 1}); keep one")
            return
        data = None if node is None else loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        reason = getattr(exc, "problem", None) or str(exc)
        errors.append(f"{path}{line}: malformed YAML: {reason}")
        return
    except (ValueError, RecursionError) as exc:
        errors.append(f"{path}: malformed YAML: {_reason(exc)}")
        return
    finally:
        loader.dispose()
    if data is None:
        return
    if isinstance(data, dict) and isinstance(data.get("problems"), list):
        assert isinstance(node, yaml.MappingNode)
        node = next(value for key, value in node.value if key.value == "problems")
        data = data["problems"]
    if not isinstance(data, list) or not isinstance(node, yaml.SequenceNode):
        errors.append(f"{path}:1: expected a list of problems (or a 'problems:' list)")
        return
    for index, (item, item_node) in enumerate(zip(data, node.value, strict=True), start=1):
        yield item_node.start_mark.line + 1, str(index), item


def _first_alias(root: yaml.Node) -> yaml.Node | None:
    """A node reached twice, which only an alias makes: the composer shares the anchored
    node, and building it out would copy it once per path (a "billion laughs")."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            return node
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.extend((key, value))
    return None


def _duplicate_key(root: yaml.Node) -> tuple[yaml.Node, yaml.Node] | None:
    """A key given twice in one mapping, and its first: YAML forbids it, and the parser would
    keep the last silently (a second `problems:` list would replace the first). Keys compare
    by tag and text, as they are built: `1` and `"1"` differ. Walked without recursion, after
    `_first_alias` made sure the nodes form a tree."""
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            seen: dict[tuple[str, str], yaml.Node] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and \
                        (first := seen.setdefault((key.tag, key.value), key)) is not key:
                    return key, first
                stack.extend((key, value))
    return None


def _reason(exc: ValueError | RecursionError) -> str:
    """Why a parser gave up on a value that is well formed: an integer of more digits than
    Python converts, or nesting past the interpreter's stack."""
    if isinstance(exc, RecursionError):
        return f"nested too deeply (at most {MAX_DEPTH} levels are allowed)"
    # Python's own advice after the ';' (set_int_max_str_digits) is not the user's to follow.
    return str(exc).split(";")[0]
