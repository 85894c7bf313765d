"""The results file's group commit: every row is in the file the moment it is appended (a killed
run keeps it), rows appended together share one fsync, no row waits much longer than the commit
interval to reach the disk, `sync` returns once the rows before it are there, and a failing
fsync stops the writer rather than going unnoticed."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from ponder.backends.scripted import ScriptedBackend
from ponder.core.types import Problem, Result
from ponder.runs.results import ResultsWriter, result_line
from ponder.runs.results_reader import read_results
from ponder.runs.solve_many import Solver, run_all
from ponder.strategies import REGISTRY
from tests.conftest import REPO


class FsyncLog:
    """Stands in for `os.fsync`: does it, and notes when each began and how much of the file
    it covered."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail: bool = False) -> None:
        self.calls: list[tuple[float, int]] = []  # (began, file size then)
        self.fail = fail
        self._lock = threading.Lock()
        self._real = os.fsync
        monkeypatch.setattr(os, "fsync", self)

    def __call__(self, fd: int) -> None:
        with self._lock:
            self.calls.append((time.monotonic(), os.fstat(fd).st_size))
        if self.fail:
            raise OSError(errno.EIO, "Input/output error")
        self._real(fd)

    @property
    def covered(self) -> int:
        """Bytes of the file the fsyncs so far have put on disk."""
        return max((size for _, size in self.calls), default=0)


def row(i: int) -> Result:
    return Result(id=f"p{i}", answer=str(i))


async def test_rows_appended_together_share_one_fsync(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    fsyncs = FsyncLog(monkeypatch)
    path = tmp_path / "results.jsonl"
    with ResultsWriter(path) as writer:
        for i in range(100):
            writer.append(row(i))
        assert len(read_results(path)) == 100  # in the file at once, before any fsync ends
        await writer.sync()
        assert fsyncs.covered == path.stat().st_size  # every row on disk when sync returns
        assert len(fsyncs.calls) <= 3  # not 100


async def test_a_steady_stream_of_rows_reaches_the_disk_within_the_interval(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fsyncs = FsyncLog(monkeypatch)
    path = tmp_path / "results.jsonl"
    appended: list[tuple[float, int]] = []  # (when, file size after the row)
    with ResultsWriter(path, commit_interval=0.1) as writer:
        started = time.monotonic()
        while time.monotonic() - started < 0.6:
            writer.append(row(len(appended)))
            appended.append((time.monotonic(), path.stat().st_size))
            await asyncio.sleep(0.005)
        await writer.sync()
    # One for the first row, then about one per interval, however many rows (here about 100)
    # came meanwhile, and one for what the last interval left.
    assert 3 <= len(fsyncs.calls) <= 1 + 6 + 1 < len(appended) / 5
    # Each row is covered by an fsync that began within the interval after it (plus slack
    # for a busy machine), never left for the end of the run.
    for when, size in appended:
        began = min(t for t, covered in fsyncs.calls if covered >= size)
        assert began - when < 0.1 + 0.25


async def test_run_all_returns_with_every_row_on_disk_in_a_few_fsyncs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fsyncs = FsyncLog(monkeypatch)
    single = REGISTRY.get("single")
    solver = Solver(single, single.make_config({}), ScriptedBackend("Final answer: 1",
                                                                    latency_s=0.002))
    path = tmp_path / "results.jsonl"
    problems = [Problem(id=f"p{i}", problem=f"{i}?") for i in range(200)]
    with ResultsWriter(path) as writer:
        await run_all(problems, solver, concurrency=16, writer=writer)
        assert fsyncs.covered == path.stat().st_size
    assert len(read_results(path)) == 200
    assert len(fsyncs.calls) < 50  # rows share fsyncs; one each would be 200


async def test_a_failing_fsync_is_raised_by_the_next_call(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    FsyncLog(monkeypatch, fail=True)
    writer = ResultsWriter(tmp_path / "results.jsonl")
    writer.append(row(0))
    with pytest.raises(OSError, match="fsync failed"):
        await writer.sync()
    with pytest.raises(OSError, match="fsync failed"):
        writer.append(row(1))
    with pytest.raises(OSError, match="fsync failed"):
        writer.close()
    assert [r.id for r in read_results(tmp_path / "results.jsonl")] == ["p0"]


WRITER = textwrap.dedent("""
    import asyncio, sys
    from ponder.runs.results import ResultsWriter
    from ponder.core.types import Result

    async def main() -> None:
        writer = ResultsWriter(sys.argv[1])
        i = 0
        while True:
            writer.append(Result(id=f"synced-{i}", answer=str(i)))
            await writer.sync()
            print(f"synced-{i}", flush=True)
            writer.append(Result(id=f"appended-{i}", answer=str(i)))
            print(f"appended-{i}", flush=True)
            i += 1
            await asyncio.sleep(0.001)

    asyncio.run(main())
""")


def test_rows_survive_a_sigkill_of_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    reported = [proc.stdout.readline().strip() for _ in range(60)]
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    # Every row it reported, synced or only appended, is in the file, whole.
    on_file = {r.id for r in read_results(path)}
    assert set(reported) <= on_file


@pytest.mark.parametrize("how", ["replaced", "removed", "folder removed"])
def test_rows_go_to_the_file_at_the_path_when_it_is_swapped_under_the_writer(
        tmp_path: Path, how: str, caplog: pytest.LogCaptureFixture) -> None:
    # As `git stash` then `git stash pop` did to a bench's run: the file was written anew
    # under the writer, whose later rows went to the unlinked file and were lost.
    path = tmp_path / "runs" / "results.jsonl"
    with ResultsWriter(path) as out:
        out.append(row(1))
        if how == "replaced":
            copy = path.with_name("copy.jsonl")
            copy.write_bytes(path.read_bytes() + b'{"id": "torn')  # a torn write in it
            os.replace(copy, path)
        elif how == "removed":
            path.unlink()
        else:
            path.unlink()
            path.parent.rmdir()
        out.append(row(2))
        out.append(row(3))
    # The torn row is cut, as a resume cuts it, so the file reads whole.
    assert path.read_text() == "".join(
        result_line(row(i)) for i in ([1, 2, 3] if how == "replaced" else [2, 3]))
    assert [r.id for r in read_results(path)] == (["p1", "p2", "p3"] if how == "replaced"
                                                   else ["p2", "p3"])
    assert "was replaced or removed" in caplog.text
