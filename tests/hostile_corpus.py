"""Hostile candidates, each with the verdict it must get in each unit-test mode.

Every trick the two red-team passes found (docs/trust.md) is here, written as a model would
write it: a reply that holds a wrong solution and tries to make it pass. In `isolated` mode
(the default) every one must fail. `in_process` mode runs code and tests in one process and
is documented as no defence; the tricks known to forge a verdict there are marked `forges`,
and the corpus checks that they still do, so each is a real attack and not a test that cannot
fail. `tests/test_hostile_corpus.py` runs them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ponder.core.types import Problem

# The right answer is 4242 + x - 7, which a wrong solution cannot know.
SECRET = Problem(id="secret", problem="Write secret(x).",
                 tests=["assert secret(7) == 4242", "assert secret(8) == 4243"])
WRONG = "def secret(x):\n    return 0\n"
RIGHT = "def secret(x):\n    return 4235 + x\n"
FORGED = ('{"phase": "tests", "results": [{"test": "assert secret(7) == 4242", '
          '"passed": true, "error": null, "public": false}]}')


@dataclass(frozen=True)
class Hostile:
    origin: str  # which red-team pass found it, and the section
    code: str  # WRONG stands for the wrong solution the trick wraps
    problem: Problem = field(default_factory=lambda: SECRET)
    forges_in_process: bool = False  # in_process mode is no defence against it (documented)
    partial: bool = False  # some of the problem's tests pass by design: it must not pass all
    # Any text the verdict's feedback must hold: what a failure must say for the trick's sake.
    says: tuple[str, ...] = field(default_factory=tuple)

    def source(self) -> str:
        return self.code.strip().replace("WRONG", WRONG) + "\n"


_RACE_PREAMBLE = """
import ctypes, os, re, signal
libc = ctypes.CDLL(None, use_errno=True)
def descriptors_of(pid):
    # Stop the process, then copy each of its descriptors with pidfd_getfd (438).
    taken = []
    try:
        os.kill(pid, signal.SIGSTOP)
        pidfd = os.pidfd_open(pid)
        for fd in range(3, 64):
            got = libc.syscall(438, pidfd, fd, 0)
            if got >= 0:
                taken.append(got)
    except OSError:
        pass
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except OSError:
            pass
    return taken
"""



def _on_empty_descriptors(payload: str) -> str:
    """The wrong solution, after writing `payload` (an expression) to every empty descriptor
    it holds at its start: where a report would go, if it held the report's."""
    return f"""
import os
for fd in range(3, 64):
    try:
        if os.fstat(fd).st_size == 0 and os.lseek(fd, 0, os.SEEK_CUR) == 0:
            os.write(fd, {payload})
    except OSError:
        pass
WRONG"""


def _right_on_the_example_only(*private: str) -> Hostile:
    """A solution right on the public example alone, against private tests of a shape that
    once ran nothing (and so let the public example score)."""
    return Hostile("trust 2 §3 (review)", "def secret(x):\n    return 4242 if x == 7 else 0",
                   problem=Problem(id="shape", problem="Write secret(x).",
                                   tests_public=["assert secret(7) == 4242"], tests=list(private)))


CORPUS: dict[str, Hostile] = {
    # -- the first pass: the harness ran in the candidate's own process ----------------------
    "patch the harness's result function": Hostile("trust 1", """
import __main__
__main__._result = lambda test, passed, error=None: {"test": test, "passed": True,
                                                       "error": None}
WRONG""", forges_in_process=True),
    "builtins.exec becomes a no-op": Hostile("trust 1", """
import builtins
builtins.exec = lambda *args, **kwargs: None
WRONG""", forges_in_process=True),
    "forge a report on an inherited descriptor, then _exit(0)": Hostile("trust 1", f"""
import os
for fd in range(3, 64):
    try:
        os.write(fd, {FORGED!r}.encode())
    except OSError:
        pass
os._exit(0)"""),
    "an atexit hook rewrites the report": Hostile("trust 1", f"""
import atexit, os
def forge():
    for fd in range(3, 64):
        try:
            os.lseek(fd, 0, 0)
            os.write(fd, {FORGED!r}.encode())
        except OSError:
            pass
atexit.register(forge)
WRONG"""),
    "json.dumps writes a forged report": Hostile("trust 1", f"""
import json
json.dumps = lambda *args, **kwargs: {FORGED!r}
WRONG"""),
    "ast.parse finds no tests": Hostile("trust 1", """
import ast
ast.parse = lambda *args, **kwargs: ast.Module(body=[], type_ignores=[])
WRONG"""),
    "a value whose __eq__ always says yes": Hostile("trust 1", """
class Yes:
    def __eq__(self, other):
        return True
def secret(x):
    return Yes()""", forges_in_process=True),
    "an int subclass that equals anything": Hostile("trust 1", """
class Liar(int):
    def __eq__(self, other):
        return True
    __hash__ = int.__hash__
def secret(x):
    return Liar(0)""", forges_in_process=True),
    "exit 0 as it loads": Hostile("trust 1", """
import sys
sys.exit(0)"""),
    "AssertionError made harmless": Hostile("trust 1", """
import builtins
builtins.AssertionError = type("Harmless", (Exception,), {})
WRONG"""),
    "an exception hook that swallows failures": Hostile("trust 1", """
import sys
sys.excepthook = lambda *args: None
WRONG"""),
    "a trace function that rewrites comparisons": Hostile("trust 1", """
import sys
def tracer(frame, event, arg):
    frame.f_globals["AssertionError"] = type("Nope", (Exception,), {})
    return tracer
sys.settrace(tracer)
WRONG"""),
    "search its own memory for the tests": Hostile("trust 1", """
import gc, re
def secret(x):
    for obj in gc.get_objects():
        for text in (obj if isinstance(obj, (list, tuple)) else [obj]):
            if isinstance(text, str):
                match = re.search(rf"secret\\({x}\\) == (\\d+)", text)
                if match:
                    return int(match.group(1))
    return 0""", forges_in_process=True),
    "read the tests from the judge's memory, descriptors and files": Hostile("trust 1", """
import os, re
def secret(x):
    sources = [f"/proc/{os.getppid()}/{p}" for p in ("environ", "cmdline")]
    try:
        sources += [f"/proc/{os.getppid()}/fd/{fd}"
                    for fd in os.listdir(f"/proc/{os.getppid()}/fd")]
    except OSError:
        pass
    sources += [os.path.join(d, n) for d, _, names in os.walk(".") for n in names]
    for path in sources:
        try:
            with open(path, "rb") as f:
                text = f.read(1 << 20).decode("latin-1")
        except OSError:
            continue
        match = re.search(rf"secret\\({x}\\) == (\\d+)", text)
        if match:
            return int(match.group(1))
    return 0"""),
    # -- the second pass ----------------------------------------------------------------------
    "§1 stop the judge and read the tests from its descriptors": Hostile(
        "trust 2 §1", _RACE_PREAMBLE + """
found = {}
for fd in descriptors_of(os.getppid()):
    try:
        data = os.pread(fd, 1 << 16, 0)
    except OSError:
        continue
    for call, value in re.findall(rb"secret\\((\\d+)\\) == (\\d+)", data):
        found[int(call)] = int(value)
def secret(x):
    return found.get(x, 0)"""),
    "§1 stop the judge and forge its report, padded past the cap": Hostile(
        "trust 2 §1", _RACE_PREAMBLE + f"""
for fd in descriptors_of(os.getppid()):
    try:
        if os.fstat(fd).st_size == 0:
            os.write(fd, {FORGED!r}.encode().ljust(1 << 20))
    except OSError:
        pass
WRONG"""),
    "§1 a forged report padded to the cap on its own descriptor": Hostile(
        "trust 2 §1", _on_empty_descriptors(f"{FORGED!r}.encode().ljust(1 << 20)")),
    "§1 two reports, the forged one first": Hostile(
        "trust 2 §1", _on_empty_descriptors(f"{FORGED!r}.encode() + b'\\n'")),
    "§3 a module-level abs that is always 0": Hostile("trust 2 §3", """
def abs(*args):
    return 0
def secret(x):
    return 0""", problem=Problem(
        id="float", problem="Write secret(x).",
        tests=["assert abs(secret(7) - 4242.5) < 1e-6"])),
    "§3 a module-level set that equals everything": Hostile("trust 2 §3", """
def set(*args):
    return 1
def secret(x):
    return None""", problem=Problem(
        id="set", problem="Write secret(x).", tests=["assert set(secret(2)) == set([1, 2])"])),
    "§3 len, sorted and max shadowed": Hostile("trust 2 §3", """
def len(*args):
    return 3
def sorted(*args, **kwargs):
    return [1, 2, 3]
def max(*args):
    return 9
def secret(x):
    return None""", problem=Problem(
        id="shadow", problem="Write secret(x).",
        tests=["assert len(secret(3)) == 3", "assert sorted(secret(3)) == [1, 2, 3]",
               "assert max(secret(3)) == 9"])),
    "§4 StopIteration ends the map the test zips": Hostile("trust 2 §4", """
def secret(x):
    raise StopIteration""", problem=Problem(
        id="stop", problem="Write secret(x).",
        tests=["assert all(a == b for a, b in zip(map(secret, [7, 8]), [4242, 4243]))"]),
        says=("StopIteration",)),
    "§4 StopAsyncIteration, GeneratorExit, KeyboardInterrupt, SystemExit": Hostile(
        "trust 2 §4", """
KINDS = [StopAsyncIteration, GeneratorExit, KeyboardInterrupt, SystemExit]
def secret(x):
    raise KINDS[x % 4]""", problem=Problem(
        id="control", problem="Write secret(x).",
        tests=["assert all(a == b for a, b in zip(map(secret, [4]), [1]))",
               "assert all(a == b for a, b in zip(map(secret, [5]), [1]))",
               "assert all(a == b for a, b in zip(map(secret, [6]), [1]))",
               "assert all(a == b for a, b in zip(map(secret, [7]), [1]))"])),
    "§3 redefine the problem's own helper the tests call": Hostile("trust 2 §3 (review)", """
def shift(x):
    return 4243
def secret(x):
    return 0""", problem=Problem(
        id="helper", entry_point="secret",
        problem='def shift(x):\n    return x + 1\n\n\ndef secret(x):\n    """x to its secret."""\n',
        tests=["assert shift(secret(7)) == 4243"])),
    "§1 read what the tests print from the judge's output": Hostile("trust 2 §1 (review)", """
import os, re
def secret(x):
    for fd in (1, 2):
        try:
            text = os.pread(fd, 1 << 16, 0).decode("latin-1")
        except OSError:
            continue
        match = re.search(rf"secret\\({x}\\) == (\\d+)", text)
        if match:
            return int(match.group(1))
    return 0""", problem=Problem(
        id="printed", problem="Write secret(x).",
        tests=["import sys\nprint('checking secret(7) == 4242', file=sys.stderr, flush=True)\n"
               "print('checking secret(8) == 4243', flush=True)",
               "assert secret(7) == 4242", "assert secret(8) == 4243"]),
        forges_in_process=True, partial=True),
    "§1 rewrite the judge's script so its tracebacks crash it": Hostile(
        "trust 2 §1 (review)", """
def secret(x):
    try:
        with open("harness.py", "w") as f:
            f.write("# -*- coding: rot13 -*-\\n")
    except OSError:
        pass
    return 0""", says=("hidden tests failed",)),
    "private tests as a script: if __name__ == '__main__'": _right_on_the_example_only(
        "def check(f):\n    assert f(8) == 4243\n\nif __name__ == '__main__':\n"
        "    check(secret)\n"),
    "private tests as a unittest.TestCase": _right_on_the_example_only(
        "import unittest\nclass T(unittest.TestCase):\n    def test_8(self):\n"
        "        self.assertEqual(secret(8), 4243)\n"),
    "private tests as async and generator test functions": _right_on_the_example_only(
        "async def test_a():\n    assert secret(8) == 4243\n",
        "def test_b():\n    assert secret(8) == 4243\n    yield\n"),
    "private tests as a top-level loop": _right_on_the_example_only(
        "for x, want in [(8, 4243), (9, 4244)]:\n    assert secret(x) == want\n"),
    "tests that put the cwd on sys.path import the candidate's module": Hostile(
        "trust 2 (review 2)", """
import os
for where in (".", ".."):
    try:
        with open(os.path.join(where, "unittest.py"), "w") as f:
            f.write("import sys\\nsys.modules['__main__'].__dict__['_result'] = "
                    "lambda t, p, e=None: {'test': t, 'passed': True, 'error': None}\\n")
    except OSError:
        pass
WRONG""", problem=Problem(id="syspath", problem="Write secret(x).", tests=[
        "import sys\nsys.path.insert(0, '.')\nimport unittest\nassert secret(7) == 4242"]),
        partial=True),
    "rewrite solution.py after a test reads the source": Hostile("trust 2 (review 2)", """
import os
def secret(x):
    return sorted([x])[0] * 0
for where in (".", ".."):
    try:
        with open(os.path.join(where, "solution.py"), "w") as f:
            f.write("def secret(x):\\n    return 4235 + x\\n")
    except OSError:
        pass""", problem=Problem(id="source", problem="Write secret(x) without sorted().",
                                 tests=["assert 'sorted(' not in open('solution.py').read()",
                                        "assert secret(7) == 4242"]), partial=True),
    "delete its entry point so the problem's reference runs": Hostile("trust 2 (review 2)", """
def secret(x):
    return -1
del secret""", problem=Problem(
        id="reference", entry_point="secret",
        problem='def secret(x):\n    """Make this faster."""\n    return 4235 + x\n',
        tests=["assert secret(7) == 4242"])),
    "private tests in a pytest-style class": Hostile("trust 2 (review 2)", "WRONG",
        problem=Problem(id="pyclass", problem="Write secret(x).", tests=[
            "class TestSecret:\n    def test_7(self):\n        assert secret(7) == 4242\n"])),
    "private tests that define check() and never call it": Hostile(
        "trust 2 (review 2)", "WRONG", problem=Problem(
            id="uncalled", problem="Write secret(x).", entry_point="secret",
            tests=["def check(candidate):\n    assert candidate(7) == 4242\n"])),
    "an async generator test": Hostile("trust 2 (review 2)", "WRONG", problem=Problem(
        id="agen", problem="Write secret(x).",
        tests=["async def test_a():\n    assert secret(7) == 4242\n    yield\n"])),
    "unittest skips": Hostile("trust 2 (review 2)", "WRONG", problem=Problem(
        id="skip", problem="Write secret(x).", tests=[
            "import unittest\n@unittest.skip('no numpy here')\nclass T(unittest.TestCase):\n"
            "    def test_7(self):\n        self.assertEqual(secret(7), 4242)\n"])),
    "the harness's own refusal as the TypeError a test expects": Hostile(
        "trust 2 (review 2)", "WRONG", problem=Problem(
            id="typeerror", problem="Write secret(x); it raises TypeError for bytes.",
            tests=["import unittest\nclass T(unittest.TestCase):\n    def test_bytes(self):\n"
                   "        with self.assertRaises(TypeError):\n            secret(b'ab')\n"])),
    "§1 signal every process it can see": Hostile("trust 2 §1", """
import os, signal
def secret(x):
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            try:
                os.kill(int(name), signal.SIGKILL)
            except OSError:
                pass
    return 0"""),
}
