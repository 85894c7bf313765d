"""A disk that fills up under a run: one line naming the file, every row already written whole,
no file of the run's left behind when it wrote no row, and `--resume` finishing the run once
there is room."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ponder.cli import app
from ponder.core.errors import OutputError
from ponder.core.tracing import JsonlTraceWriter
from ponder.core.types import Result, TraceEvent
from ponder.runs.results import ResultsWriter, rewrite_results
from ponder.runs.results_reader import read_results
from ponder.runs.run_lock import lock_path
from ponder.testing import FakeOpenAIServer

NO_SPACE = os.strerror(errno.ENOSPC)


def no_room(path: object) -> str:
    return (f"{path}: cannot write: {NO_SPACE}; what was written before is kept whole: make "
            "room, then run again with --resume")


class SmallDisk:
    """Stands in for `os.write`: the files in `folder` share `capacity` bytes, and a write past
    them is cut short, then refused with ENOSPC, as a real disk does. Writes elsewhere go
    through."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, folder: Path, capacity: int) -> None:
        self.folder = folder
        self.capacity = capacity
        self.refused = 0
        self._real = os.write
        monkeypatch.setattr(os, "write", self)

    def _sizes(self) -> dict[tuple[int, int], int]:
        sizes = {}
        for path in self.folder.iterdir():
            try:
                info = path.stat(follow_symlinks=False)
            except FileNotFoundError:  # removed meanwhile
                continue
            sizes[(info.st_dev, info.st_ino)] = info.st_size
        return sizes

    def __call__(self, fd: int, data: bytes) -> int:
        info = os.fstat(fd)
        sizes = self._sizes()
        if (info.st_dev, info.st_ino) not in sizes:
            return self._real(fd, data)
        free = self.capacity - sum(sizes.values())
        if free <= 0:
            self.refused += 1
            raise OSError(errno.ENOSPC, NO_SPACE)
        return self._real(fd, bytes(data[:free]))


def solve(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["solve", *(str(a) for a in args)])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback, not one line
    return result.exit_code, result.stderr


def write_problems(path: Path, count: int) -> Path:
    path.write_text("".join(json.dumps({"id": f"s{i}", "problem": f"What is {i} + {i + 1}?",
                                        "answer": str(2 * i + 1)}) + "\n"
                            for i in range(count)))
    return path


def whole_lines(path: Path) -> list[dict[str, object]]:
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), f"{path} ends in a torn line"
    return [json.loads(line) for line in data.splitlines()]


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


def run_files_on_a_disk(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A folder standing for a small disk, and the results and trace paths on it."""
    disk = tmp_path / "disk"
    disk.mkdir()
    return disk, disk / "r.jsonl", disk / "r.trace.jsonl"


def test_a_disk_that_fills_mid_run_stops_it_with_one_line_and_resume_finishes_it(
        server: FakeOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    problems = write_problems(tmp_path / "p.jsonl", 12)
    disk, out, trace = run_files_on_a_disk(tmp_path)
    # Room for a few problems' rows and traces (about 2 KB each), not for twelve.
    full = SmallDisk(monkeypatch, disk, capacity=8_000)
    code, stderr = solve(problems, "--base-url", server.base_url, "-o", out, "--trace", trace,
                         "--concurrency", "2")
    assert code == 1 and full.refused
    # Only ponder's lines: the fake server may print a traceback of its own for a request
    # the run dropped as it stopped (`solve` raises any of ponder's).
    [error] = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert error in (f"error: {no_room(out)}", f"error: {no_room(trace)}")
    written = {row.id for row in read_results(out)}
    assert 0 < len(written) < 12
    assert len(whole_lines(out)) == len(written)
    assert {e["problem_id"] for e in whole_lines(trace)} >= written
    assert not lock_path(out).exists() and not lock_path(trace).exists()

    full.capacity = 1 << 30  # room again
    code, stderr = solve(problems, "--base-url", server.base_url, "-o", out, "--trace", trace,
                         "--resume")
    assert code == 0, stderr
    ids = [row.id for row in read_results(out)]
    assert sorted(ids) == sorted(f"s{i}" for i in range(12))  # each once
    assert {e["problem_id"] for e in whole_lines(trace)} == set(ids)


@pytest.mark.parametrize("full_one", ["results", "trace", "both"])
def test_a_run_that_could_write_no_row_leaves_no_file_of_its_own(
        server: FakeOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        full_one: str) -> None:
    # `-o /dev/full` left `/dev/full.trace.jsonl` behind, holding the events of a problem
    # that has no row, and a plain run again refused it as a trace holding a run.
    problems = write_problems(tmp_path / "p.jsonl", 3)
    disk, roomy = tmp_path / "disk", tmp_path / "roomy"
    disk.mkdir()
    roomy.mkdir()
    out = (disk if full_one in ("results", "both") else roomy) / "r.jsonl"
    trace = (disk if full_one in ("trace", "both") else roomy) / "r.trace.jsonl"
    full = SmallDisk(monkeypatch, disk, capacity=100)  # the locks' pids, and a part of a line
    code, stderr = solve(problems, "--base-url", server.base_url, "-o", out, "--trace", trace)
    assert code == 1 and full.refused
    assert stderr.splitlines()[-1] == f"error: {no_room(out if full_one == 'results' else trace)}"
    assert list(disk.iterdir()) == [] and list(roomy.iterdir()) == []

    full.capacity = 1 << 30
    code, stderr = solve(problems, "--base-url", server.base_url, "-o", out, "--trace", trace)
    assert code == 0, stderr  # a plain run, not --resume: nothing was left in its way
    assert len(read_results(out)) == 3


def test_a_full_disk_on_resume_keeps_the_files_that_were_there_byte_for_byte(
        server: FakeOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    problems = write_problems(tmp_path / "p.jsonl", 4)
    disk, out, trace = run_files_on_a_disk(tmp_path)
    write_problems(tmp_path / "first.jsonl", 2)
    assert solve(tmp_path / "first.jsonl", "--base-url", server.base_url, "-o", out,
                 "--trace", trace)[0] == 0
    before = {out: out.read_bytes(), trace: trace.read_bytes()}
    used = sum(len(data) for data in before.values())
    full = SmallDisk(monkeypatch, disk, capacity=used + 50)
    code, stderr = solve(problems, "--base-url", server.base_url, "-o", out, "--trace", trace,
                         "--resume")
    assert code == 1 and full.refused, stderr
    assert {path: path.read_bytes() for path in before} == before  # no torn line, none gone
    assert sorted(p.name for p in disk.iterdir()) == ["r.jsonl", "r.trace.jsonl"]


def test_the_disk_that_is_always_full_gives_one_line(server: FakeOpenAIServer,
                                                     tmp_path: Path) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    # Its lock goes in /dev: only where this user may make one there.
    if not os.access("/dev", os.W_OK):
        pytest.skip("/dev is not writable here")
    problems = write_problems(tmp_path / "p.jsonl", 1)
    trace = tmp_path / "t.jsonl"
    code, stderr = solve(problems, "--base-url", server.base_url, "-o", "/dev/full",
                         "--trace", trace)
    assert code == 1
    assert stderr.splitlines()[-1] == f"error: {no_room('/dev/full')}"
    assert not trace.exists() and not lock_path(Path("/dev/full")).exists()
    assert Path("/dev/full").is_char_device()


def test_a_torn_row_is_cut_so_the_file_ends_whole(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "r.jsonl"
    full = SmallDisk(monkeypatch, tmp_path, capacity=1_000)
    writer = ResultsWriter(path, fsync=False)
    with pytest.raises(OutputError) as caught:
        for i in range(100):
            writer.append(Result(id=f"p{i}", answer="x" * 100))
    writer.close()
    assert caught.value.errno == errno.ENOSPC and isinstance(caught.value, OSError)
    assert full.refused == 1
    assert str(caught.value) == no_room(path)
    assert len(whole_lines(path)) == writer.rows > 0
    assert not writer.discard_if_empty() and path.exists()  # it holds rows


def test_a_trace_that_cannot_be_written_says_so_at_every_later_event(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.jsonl"
    events = [TraceEvent(kind="note", step=f"step {i}", problem_id="a") for i in range(10)]
    # Room for two events and a half, whatever size an event's fields make a line.
    SmallDisk(monkeypatch, tmp_path, capacity=5 * len(events[0].model_dump_json()) // 2)
    sink = JsonlTraceWriter(path)
    with pytest.raises(OutputError):
        for event in events:
            sink(event)
    with pytest.raises(OutputError):
        sink(events[0])  # even once there would be room for a short one
    sink.close()
    assert 0 < len(whole_lines(path)) < 10


def test_a_rewrite_that_runs_out_of_room_leaves_the_old_file_and_no_scratch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "r.jsonl"
    with ResultsWriter(path) as writer:
        for i in range(3):
            writer.write(Result(id=f"p{i}", answer=str(i)))
    before = path.read_bytes()
    SmallDisk(monkeypatch, tmp_path, capacity=len(before) + 100)
    with pytest.raises(OutputError) as caught:
        rewrite_results(path, [Result(id=f"p{i}", answer="y" * 50) for i in range(3)])
    assert str(caught.value) == (f"{path}: cannot rewrite it without the rows to drop: "
                                 f"{NO_SPACE}; it was left as it was: make room, then run again")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.jsonl"]


# -- a real filesystem that fills up ----------------------------------------------------------


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs, where this user may mount one (root, on Linux); skipped elsewhere."""
    mount = shutil.which("mount")
    folder = tmp_path / "tmpfs"
    folder.mkdir()
    if mount is None or subprocess.run(
            [mount, "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
            capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True, capture_output=True)


def test_a_real_tmpfs_that_fills_up(server: FakeOpenAIServer, tmpfs: Path,
                                    tmp_path: Path) -> None:
    problems = write_problems(tmp_path / "p.jsonl", 40)
    out, trace = tmpfs / "r.jsonl", tmpfs / "r.trace.jsonl"
    code, stderr = solve(problems, "--base-url", server.base_url, "-o", out)
    assert code == 1
    assert stderr.splitlines()[-1] in (f"error: {no_room(out)}", f"error: {no_room(trace)}")
    written = len(read_results(out))
    assert 0 < written < 40 and len(whole_lines(out)) == written
    assert whole_lines(trace)

    subprocess.run(["mount", "-o", "remount,size=1m", str(tmpfs)], check=True,
                   capture_output=True)
    code, stderr = solve(problems, "--base-url", server.base_url, "-o", out, "--resume")
    assert code == 0, stderr
    assert sorted(row.id for row in read_results(out)) == sorted(f"s{i}" for i in range(40))
