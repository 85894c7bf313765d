"""Examples read from a coding problem's prompt, by rule: doctest, `f(x) == y` and its
cousins (`➞`, `=>`, `->`, `==>`, `=`, "returns", "should return"), LeetCode blocks
(`Input: arr = [1], k = 1` / `Output: 1`), and prose ("For lst = [1, 2] the output should be
3"). Only examples whose arguments and result are Python literals are kept, so each is judged
without a model. One pass, linear in the text, never raising (`prompt_examples`)."""

from __future__ import annotations

import ast
import builtins
import keyword
import re

from ponder.code.example import NUMBER, PARSE_ERRORS, Example, clip, is_literal, quiet

_TEXT_CAP = 100_000  # a prompt is read this far, so any input is read fast
_LINE_CAP = 2_000  # no real example line is longer; it bounds every scan of a line
_CALLS_PER_LINE = 20  # so a line of `f(f(f(...` costs at most this many scans
_DEPTH = 50  # deeper brackets are no example, and would strain ast's recursion
_WANT_LINES = 10  # a doctest's expected value may span lines (a long list)
_BUILTINS = frozenset(dir(builtins))
_JS = {"true": True, "false": False, "null": None}
_CLOSE = {"(": ")", "[": "]", "{": "}"}

_CALL = re.compile(r"(?<![\w.])([A-Za-z_]\w*)([ \t]*)\(")
_SEP = re.compile(r"[ \t]*(==>|==|=>|->|➞|=|should return|returns)[ \t]*")
_STRING = re.compile(r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\"")
_BRACKET = re.compile(rf"[][(){{}}]|{_STRING.pattern}|['\"]")
_TOKEN = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|[A-Za-z_]\w*")
_TAIL_OK = re.compile(r"[ \t]*(?:#.*|[.,;](?:[ \t].*)?)?")  # a comment, or the prose goes on
_CHAIN = re.compile(r"[0-9 \t+\-*/().=]*=[ \t]*")  # `-> 19 - 5 - 6 = 8`: the last value
_NAMED = re.compile(r"[ \t]*([A-Za-z_]\w*)[ \t]*[=:](?!=)[ \t]*")
_COMMA = re.compile(r"[ \t]*,")
_DEF = re.compile(r"[ \t]*(?:async[ \t]+)?def[ \t]+([A-Za-z_]\w*)[ \t]*\(")
_INPUT = re.compile(r"input[ \t]*:", re.IGNORECASE)
_OUTPUT = re.compile(r"[ \t,;]*output[ \t]*:|(?-i:return)\b[ \t]*=?", re.IGNORECASE)
_EXAMPLE = re.compile(r"examples?\b[^:\n]{0,20}:[ \t]*", re.IGNORECASE)
_FOR = re.compile(r"for[ \t]+", re.IGNORECASE)
_SHOULD = re.compile(r"\b(?:output|result)[ \t]+should[ \t]+be[ \t]+", re.IGNORECASE)
_ESCAPE = re.compile(r"\\(.)")
_ESCAPES = frozenset("\\'\"abfnrtvxNuU01234567")


@quiet
def prompt_examples(text: str, entry_point: str | None) -> list[Example]:
    """Every example `text` states, origin "prompt", once each, in order of appearance.
    Deterministic, linear in the text (its first 100,000 characters) and never raising: it
    reads whatever a user passes as a problem."""
    try:
        return _Reader(text[:_TEXT_CAP], entry_point).read()
    except (RecursionError, MemoryError):  # ast on a pathological fragment: no example
        return []


def _balanced(text: str, i: int) -> int:
    """The index after the bracket that closes the one at `i` (strings skipped), or -1."""
    stack: list[str] = []
    for token in _BRACKET.finditer(text, i, i + _LINE_CAP):
        char = token.group()
        if char in _CLOSE:
            stack.append(_CLOSE[char])
        elif char in ")]}" and stack and stack.pop() == char:
            pass
        elif len(char) == 1:  # a bracket that closes nothing, or a quote that is not closed
            return -1
        if not stack:
            return token.end()
        if len(stack) > _DEPTH:
            return -1
    return -1


class _JSNames(ast.NodeTransformer):
    """Prompts in JavaScript's hand say `true`, `false`, `null`."""

    def visit_Name(self, node: ast.Name) -> ast.expr:
        return ast.Constant(_JS[node.id]) if node.id in _JS else node


def _parse(source: str) -> ast.Expression:
    """An expression from a prompt, its invalid escapes (`"\\d"`) doubled: the same value,
    without the warning Python would print for each (prose is not the reader's to lint)."""
    return ast.parse(_ESCAPE.sub(lambda found: found.group() if found.group(1) in _ESCAPES
                                 else "\\" + found.group(), source), mode="eval")


def _literal(source: str) -> str | None:
    """`source` as a normalised Python literal's source, or None where it is no literal."""
    try:
        tree = _JSNames().visit(_parse(source.strip()))
        ast.literal_eval(tree)
        return ast.unparse(tree)
    except PARSE_ERRORS:
        return None


def _literal_at(text: str, i: int) -> tuple[str, int] | None:
    """The literal that starts at `i` (after blanks), and where it ends."""
    while i < len(text) and text[i] in " \t":
        i += 1
    if i >= len(text):
        return None
    if text[i] in _CLOSE:
        end = _balanced(text, i)
    else:
        found = (_STRING if text[i] in "'\"" else _TOKEN).match(text, i)
        end = found.end() if found else -1
    literal = _literal(text[i:end]) if end > 0 else None
    return None if literal is None else (literal, end)


def _value(text: str, i: int) -> str | None:
    """The value written at `i` where only a comment or more prose follows it, or the last
    value of a worked sum (`19 - 5 - 6 = 8`)."""
    for start in (i, (chain.end() if (chain := _CHAIN.match(text, i)) else -1)):
        got = _literal_at(text, start) if start >= 0 else None
        if got is not None and _TAIL_OK.fullmatch(text, got[1]):
            return got[0]
    return None


def _assignments(text: str, i: int) -> tuple[list[tuple[str, str]], int]:
    """`name = literal, name: literal, ...` from `i`: the pairs, and where they end."""
    pairs: list[tuple[str, str]] = []
    end = i
    while (named := _NAMED.match(text, i)) and (got := _literal_at(text, named.end())):
        pairs.append((named.group(1), got[0]))
        end = i = got[1]
        if not (comma := _COMMA.match(text, i)):
            break
        i = comma.end()
    return pairs, end


def _params(line: str, paren: int) -> list[str] | None:
    end = _balanced(line, paren)
    try:
        func = ast.parse(f"def _{line[paren:end]}: pass").body[0] if end > 0 else None
    except PARSE_ERRORS:
        return None
    if not isinstance(func, ast.FunctionDef):
        return None
    return [a.arg for a in (*func.args.posonlyargs, *func.args.args, *func.args.kwonlyargs)]


class _Reader:
    """One pass over a prompt's lines, with the state examples span lines with: a LeetCode
    block's inputs waiting for their `Output:`, and whether the prompt defines its function
    by a recurrence."""

    def __init__(self, text: str, entry_point: str | None) -> None:
        self.lines = [line[:_LINE_CAP] for line in text.splitlines()]
        self.defs: dict[str, list[str] | None] = {}
        for line in self.lines:
            if found := _DEF.match(line):
                self.defs.setdefault(found.group(1), _params(line, found.end() - 1))
        self.target = entry_point or (next(iter(self.defs)) if len(self.defs) == 1 else None)
        self.params = self.defs.get(self.target) if self.target else None
        self.found: dict[tuple[str, str], tuple[Example, str]] = {}
        self.pending: list[tuple[str, str]] = []
        self.collecting, self.start = False, 0
        # `tri(n) = 1 + n / 2` defines a sequence: its `tri(4) = 3` states a term, not what
        # the function returns (HumanEval/130 returns a list), so it is no example.
        self.recurrence = False

    def read(self) -> list[Example]:
        i = 0
        while i < len(self.lines):
            stripped = self.lines[i].strip()
            if stripped.startswith(">>>"):
                i = self._doctest(i)
                continue
            self._scan(stripped, stripped)
            self._named(stripped.lstrip("*• \t"), i)
            i += 1
        return [example for example, kind in self.found.values() if not (
            self.recurrence and kind == "=" and NUMBER.fullmatch(example.expected or ""))]

    def _add(self, call: str, expected: str, line: str, kind: str) -> None:
        if (call, expected) not in self.found:
            example = Example(call=call, expected=expected, origin="prompt", line=clip(line))
            self.found[call, expected] = (example, kind)

    def _text(self, start: int, end: int) -> str:
        return "\n".join(line.strip() for line in self.lines[start:min(end, start + 20)])

    def _resolve(self, name: str, spaced: bool) -> str | None:
        """The function a call of `name` means: the entry point under its name, a variant of
        it (`digitSum` for `digit_sum`), or a stray name where the prompt defines one function
        only; never a builtin nor another function the prompt defines."""
        if name == self.target:
            return name
        if keyword.iskeyword(name) or name in _BUILTINS or spaced:
            return None
        if self.target is None:
            return name if name in self.defs or not self.defs else None
        variant = name.replace("_", "").lower() == self.target.replace("_", "").lower()
        return self.target if variant or (len(self.defs) == 1 and name not in self.defs) \
            else None

    def _doctest(self, i: int) -> int:
        """`>>> call` and its value on the next lines (or `>>> call == value`); the index of
        the line after it."""
        source, j = self.lines[i].strip()[3:], i + 1
        while j < len(self.lines) and self.lines[j].strip().startswith("..."):
            source, j = f"{source}\n{self.lines[j].strip()[3:]}", j + 1
        wants: list[str] = []
        for want in (line.strip() for line in self.lines[j:j + _WANT_LINES]):
            if not want or want.startswith((">>>", '"""', "'''")):
                break
            wants.append(want)
        taken, expected = 0, None
        while expected is None and taken < len(wants):
            taken += 1
            expected = _literal(" ".join(wants[:taken]))
        try:
            tree = _parse(source.strip()).body
        except PARSE_ERRORS:
            return j
        if not self._aim(tree):
            return j
        if expected is not None:
            self._add(ast.unparse(tree), expected, self._text(i, j + taken), ">>>")
            return j + taken
        if isinstance(tree, ast.Compare) and len(tree.ops) == 1 and \
                isinstance(tree.ops[0], ast.Eq) and \
                (expected := _literal(ast.unparse(tree.comparators[0]))) is not None:
            self._add(ast.unparse(tree.left), expected, self._text(i, j), ">>>")
        else:  # `>>> sort_array([1, 0]) [0, 1]`: the value written after the call
            self._scan(source.strip(), self._text(i, j), juxtaposed=True)
        return j

    def _aim(self, tree: ast.expr) -> bool:
        """Point the tree's calls at the entry point; whether it calls it at all."""
        calls = False
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                    (name := self._resolve(node.func.id, False)):
                node.func.id, calls = name, True
        return calls

    def _scan(self, line: str, raw: str, juxtaposed: bool = False) -> None:
        """`f(x) == y` and its cousins, anywhere in a line."""
        for count, found in enumerate(_CALL.finditer(line)):
            if count >= _CALLS_PER_LINE:
                break
            name = self._resolve(found.group(1), bool(found.group(2)))
            end = _balanced(line, found.end() - 1) if name else -1
            if name is None or end < 0:
                continue
            call, symbolic = self._call(name + line[found.end() - 1:end])
            sep = _SEP.match(line, end)
            self.recurrence |= symbolic and sep is not None and sep.group(1) == "="
            at = sep.end() if sep else end if juxtaposed else -1
            if call and at >= 0 and (expected := _value(line, at)) is not None:
                self._add(call, expected, raw, sep.group(1) if sep else "")

    def _call(self, source: str) -> tuple[str | None, bool]:
        """The call, where its arguments are literals (a bare word, as in `is_happy(abc)`, is
        a string the prompt left unquoted, unless it names a parameter); and whether its
        arguments are the parameters themselves (`tri(n)`: a definition, not an example)."""
        try:
            node = _parse(source).body
        except PARSE_ERRORS:
            return None, False
        if not isinstance(node, ast.Call) or any(k.arg is None for k in node.keywords) or \
                any(isinstance(a, ast.Starred) for a in node.args):
            return None, False
        params = self.params
        symbolic = bool(node.args) and params is not None and all(
            isinstance(a, ast.Name) and a.id in params for a in node.args)
        node.args = [self._argument(a) for a in node.args]
        for kw in node.keywords:
            kw.value = self._argument(kw.value)
        literal = all(is_literal(v) for v in (*node.args, *(k.value for k in node.keywords)))
        return (ast.unparse(node) if literal else None), symbolic

    def _argument(self, node: ast.expr) -> ast.expr:
        if isinstance(node, ast.Name) and node.id not in _JS and self.params is not None \
                and node.id not in self.params:
            return ast.Constant(node.id)
        return _JSNames().visit(node)  # type: ignore[no-any-return]

    def _named(self, body: str, i: int) -> None:
        """LeetCode blocks (`Input: arr = [1], k = 1` / `Output: 1`; the inputs one a line; or
        `arr = [1]` ... `return [1]`), and "For lst = [1] the output should be 1"."""
        if head := _EXAMPLE.match(body):  # a new example; its input may follow on the line
            self.pending, self.collecting, body = [], False, body[head.end():]
        if not body:
            self.pending, self.collecting = [], False
        elif inputs := _INPUT.match(body):
            self.pending, end = _assignments(body, inputs.end())
            self.collecting, self.start = True, i
            if output := _OUTPUT.match(body, end):
                self._output(body, output.end(), i)
        elif output := _OUTPUT.match(body):
            self._output(body, output.end(), i)
        elif (pairs := _assignments(body, 0))[0] and _TAIL_OK.fullmatch(body, pairs[1]):
            if not self.collecting:
                self.pending, self.start = [], i
            self.pending, self.collecting = [*self.pending, *pairs[0]], True
        else:
            self.collecting = False
            pairs = _assignments(body, lead.end()) if (lead := _FOR.match(body)) else ([], 0)
            should = _SHOULD.search(body, pairs[1]) if pairs[0] else None
            call = self._named_call(pairs[0])
            if should and call and (expected := _value(body, should.end())) is not None:
                self._add(call, expected, self._text(i, i + 1), "for")

    def _output(self, body: str, at: int, i: int) -> None:
        call = self._named_call(self.pending)
        if call and (expected := _value(body, at)) is not None:
            self._add(call, expected, self._text(self.start, i + 1), "output")
        self.pending, self.collecting = [], False

    def _named_call(self, pairs: list[tuple[str, str]]) -> str | None:
        """Named inputs as a call: by parameter name where the names are the parameters',
        else in order where there are as many (`bucket_capacity` for `capacity`)."""
        names, params = [name for name, _ in pairs], self.params
        if not pairs or self.target is None or len(set(names)) < len(names) or \
                any(keyword.iskeyword(name) for name in names):
            return None
        if params is None or set(names) < set(params):
            args = [f"{name}={value}" for name, value in pairs]
        elif set(names) == set(params):
            args = [dict(pairs)[param] for param in params]
        elif len(names) == len(params):
            args = [value for _, value in pairs]
        else:
            return None
        return f"{self.target}({', '.join(args)})"
