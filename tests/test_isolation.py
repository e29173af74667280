"""Process isolation: every channel carries frames of data, and a child that sends anything else,
a pickle above all, gets a clear error while nothing it sent runs in the parent."""

from __future__ import annotations

import fcntl
import os
import pickle
import stat
import time
from pathlib import Path

import numpy as np
import pytest

from sei_framework import (
    FrameError,
    InvalidRequest,
    IsolatedProcess,
    ProcessLost,
    call_isolated,
    decode_frame,
    encode_frame,
    run_script_isolated,
)
from sei_framework.framing import MAX_HEADER_BYTES

SERVE = "import sys\nfrom sei_framework import InvalidRequest, serve_isolated\n"


class Gadget:
    """Unpickling this makes a folder: the stand-in for code a hostile child wants the parent to run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def gadget_bytes(marker: Path) -> bytes:
    return pickle.dumps(("ok", Gadget(marker)), protocol=pickle.HIGHEST_PROTOCOL)


# -- the framing ---------------------------------------------------------------------------------

VALUES = [
    None, True, 0, -(2**70), 1.5, "text é", b"", b"\x00\xff" * 10, [1, [2, [b"x"]]], {"a": {"b": [None, 2.5]}},
    {"ok": [b"one", b"two", "three"]}, ["A" * 5000, "é" * 2000],
]  # fmt: skip


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_data_goes_through_a_frame_unchanged(value):
    assert decode_frame(encode_frame(value)) == value


@pytest.mark.parametrize("dtype", ["<f8", ">f8", "<i4", "<u8", "<c16", "|b1", "|u1"])
def test_numeric_arrays_go_through_with_their_dtype_and_shape(dtype):
    array = (np.arange(24).reshape(2, 3, 4) % 7).astype(dtype)
    back = decode_frame(encode_frame({"scores": array, "scalar": np.float64(2.5), "count": np.int64(3)}))
    np.testing.assert_array_equal(back["scores"], array)
    assert back["scores"].shape == (2, 3, 4) and back["scores"].dtype == array.dtype.newbyteorder("<")
    assert back["scalar"] == 2.5 and back["count"] == 3 and type(back["count"]) is int


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (object(), "a value of type object cannot be framed"),
        ({"$bytes": 0}, "not starting with '\\$'"),
        ({1: "a"}, "a dict key must be a string"),
        (float("nan"), "non-finite float"),
        (np.array([object()]), "dtype object cannot be framed"),
        (Gadget(Path("x")), "type Gadget cannot be framed"),
    ],
)
def test_what_is_not_data_cannot_be_framed(value, problem):
    with pytest.raises(FrameError, match=problem):
        encode_frame(value)


def test_bytes_that_are_not_one_frame_are_refused_naming_what_is_wrong(tmp_path):
    good = encode_frame({"ok": [b"abc", np.zeros(3)]})
    header_size = int.from_bytes(good[:4], "big")
    cases = {
        gadget_bytes(tmp_path / "ran"): "header length .* is out of bounds",
        good[:-1]: "channel ended inside a frame's blobs",
        good + b"x": "1 bytes follow the frame",
        b"\x00\x00": "channel ended inside a frame's length",
        (MAX_HEADER_BYTES + 1).to_bytes(4, "big") + b"{}": "out of bounds",
        good[:4] + b"\xff" * header_size: "header is not JSON",
        b"\x00\x00\x00\x02[]": "not a version 1 frame header",
    }
    for data, problem in cases.items():
        with pytest.raises(FrameError, match=problem):
            decode_frame(data)
    assert not (tmp_path / "ran").exists()


def frame_with(header: bytes, *blobs: bytes) -> bytes:
    return len(header).to_bytes(4, "big") + header + b"".join(blobs)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (frame_with(b'{"v":1,"blobs":[3],"value":{"$bytes":1}}', b"abc"), "names a blob it does not hold"),
        (frame_with(b'{"v":1,"blobs":[8],"value":{"$array":0,"dtype":"<f8","shape":[2]}}', b"x" * 8), "does not fill its 8 bytes"),
        (frame_with(b'{"v":1,"blobs":[8],"value":{"$array":0,"dtype":"|O","shape":[1]}}', b"x" * 8), "dtype it may not carry"),
        (frame_with(b'{"v":1,"blobs":[0],"value":{"$pickle":0}}'), "names no blob"),
        (frame_with(b'{"v":1,"blobs":[1],"value":{"$str":0}}', b"\xff"), "a string that is not UTF-8"),
        (frame_with(b'{"v":1,"blobs":[-1],"value":null}'), "not a list of sizes"),
        (frame_with(b'{"v":1,"blobs":[1073741824, 1073741824],"value":null}'), "declares 2147483648 bytes of blobs, over"),
        (frame_with(b'{"v":1,"blobs":[],"value":' + b"[" * 5000 + b"]" * 5000 + b"}"), "header is not JSON|nested deeper"),
    ],
)
def test_a_header_that_lies_about_its_blobs_is_refused(data, problem):
    with pytest.raises(FrameError, match=problem):
        decode_frame(data)


def test_a_frame_over_the_channels_bound_is_refused_before_its_blobs_are_read():
    with pytest.raises(FrameError, match="declares 1000 bytes of blobs, over the channel's bound of 999"):
        decode_frame(encode_frame(b"x" * 1000), max_bytes=999)


# -- call_isolated: a forked child ---------------------------------------------------------------


def test_call_isolated_returns_data_and_turns_a_native_abort_into_an_error():
    assert call_isolated(lambda: sum(range(10)), what="sum") == 45
    answer = call_isolated(lambda: {"results": [b"\x00" * 5], "scores": np.ones((2, 2))}, what="data")
    assert answer["results"] == [b"\x00" * 5]
    np.testing.assert_array_equal(answer["scores"], np.ones((2, 2)))
    with pytest.raises(InvalidRequest, match=r"abort failed: the native library rejected the input and crashed \(killed by SIGABRT\)"):
        call_isolated(os.abort, what="abort")
    with pytest.raises(InvalidRequest, match="slow did not finish within 0.5 s") as info:
        call_isolated(lambda: time.sleep(30), what="slow", timeout=0.5)
    assert info.value.code == "timeout"


def test_a_result_that_is_not_data_fails_in_the_child_and_runs_nothing_in_the_parent(tmp_path, caplog):
    """Old code pickled the child's result and unpickled it in the parent: this made the folder."""
    marker = tmp_path / "ran"
    with pytest.raises(InvalidRequest, match="^gadget failed: the native library rejected the input$"):
        call_isolated(lambda: Gadget(marker), what="gadget")
    assert not marker.exists()
    assert "type Gadget cannot be framed" in caplog.text


def _pipes() -> dict[int, int]:
    """The pipes this process holds only the write end of (another process reads them), by fd: their
    inodes. A pipe whose read end is here too (a library's wake-up pipe, remade after a fork) is not a
    channel to anyone, and writing much to it would block."""
    writable, readable = {}, set()
    for fd in map(int, os.listdir("/proc/self/fd")):
        try:
            info = os.fstat(fd)
            mode = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
        except OSError:
            continue
        if not stat.S_ISFIFO(info.st_mode):
            continue
        if mode == os.O_WRONLY:
            writable[fd] = info.st_ino
        else:
            readable.add(info.st_ino)
    return {fd: inode for fd, inode in writable.items() if inode not in readable}


def hostile(data: bytes):
    """A function for call_isolated that does what a child whose memory a hostile input corrupted
    can do: write anything on the answer channel (the one pipe the fork made besides stderr)."""
    before = set(_pipes().values())

    def write() -> None:
        stderr = os.fstat(2).st_ino
        for fd, inode in _pipes().items():
            if inode not in before and inode != stderr:
                os.write(fd, data)
        os._exit(0)

    return write


@pytest.mark.parametrize("kind", ["pickle", "garbage", "nothing"])
def test_a_child_that_writes_anything_but_a_frame_gets_a_clear_error_and_nothing_runs(tmp_path, kind, caplog):
    marker = tmp_path / "ran"
    data = {"pickle": gadget_bytes(marker), "garbage": b"\x00\x00\x00\x05hello", "nothing": b""}[kind]
    with pytest.raises(InvalidRequest, match="^dot product failed: the isolated process answered with something other than a frame$") as info:
        call_isolated(hostile(data), what="dot product")
    assert info.value.code == "rejected_input"
    assert not marker.exists()
    assert "did not answer with a frame" in caplog.text


def test_a_child_cannot_fill_the_parents_memory():
    flood = b"\x00\x00\x00\x20" + b"x" * (3 << 20)  # more than a frame with 1000 bytes of blobs can be
    with pytest.raises(InvalidRequest, match="answered with something other than a frame"):
        call_isolated(hostile(flood), what="flood", max_bytes=1000)


def test_a_frame_that_is_not_an_answer_is_refused(tmp_path):
    with pytest.raises(InvalidRequest, match="answered with something other than an answer"):
        call_isolated(hostile(encode_frame({"maybe": 1})), what="odd")


# -- run_script_isolated: a fresh interpreter for one request -------------------------------------


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(body)
    return path


def test_run_script_isolated_answers_with_data_and_turns_a_crash_or_hang_into_an_error(tmp_path):
    echo = script(tmp_path, "echo", SERVE + "serve_isolated(lambda request: {'back': request['data'][::-1]}, once=True)\n")
    assert run_script_isolated(echo, {"data": b"abc"}, what="echo") == {"back": b"cba"}
    big = b"k" * (3 << 20)  # more than a pipe holds: written while the script reads
    assert run_script_isolated(echo, {"data": big}, what="echo") == {"back": big[::-1]}
    abort = script(tmp_path, "abort", "import os, sys\nsys.stderr.write('terminate called: bad key\\n')\nos.abort()\n")
    with pytest.raises(InvalidRequest, match="abort failed: the native library rejected the input and crashed \\(killed by SIGABRT\\)") as info:
        run_script_isolated(abort, b"", what="abort")
    assert info.value.code == "rejected_input"
    slow = script(tmp_path, "slow", "import time\ntime.sleep(30)\n")
    with pytest.raises(InvalidRequest, match="slow did not finish within 0.5 s") as info:
        run_script_isolated(slow, b"", what="slow", timeout=0.5)
    assert info.value.code == "timeout"


def test_a_scripts_refusal_keeps_its_code_and_message(tmp_path):
    refuse = script(tmp_path, "refuse", SERVE + "def no(request):\n    raise InvalidRequest('keys of 3 bytes', code='invalid_keys')\n"
                    "serve_isolated(no, once=True)\n")  # fmt: skip
    with pytest.raises(InvalidRequest, match="^keys of 3 bytes$") as info:
        run_script_isolated(refuse, b"abc", what="refuse")
    assert info.value.code == "invalid_keys"


def test_a_script_that_answers_with_a_pickle_gets_a_clear_error_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"
    hostile = script(tmp_path, "hostile", f"import sys\nsys.stdout.buffer.write({gadget_bytes(marker)!r})\n")
    with pytest.raises(InvalidRequest, match="^probe failed: the isolated process answered with something other than a frame$") as info:
        run_script_isolated(hostile, b"", what="probe")
    assert info.value.code == "rejected_input"
    assert not marker.exists()


def test_what_a_script_prints_stays_off_the_channel(tmp_path):
    chatty = script(tmp_path, "chatty", SERVE + "def answer(request):\n    print('progress 50%')\n    return 7\nserve_isolated(answer, once=True)\n")
    assert run_script_isolated(chatty, None, what="chatty") == 7


# -- IsolatedProcess: a long-lived interpreter ----------------------------------------------------


@pytest.fixture
def engine(tmp_path):
    body = SERVE + (
        "import os, time\n"
        "def handle(request):\n"
        "    op = request['op']\n"
        "    if op == 'pid': return os.getpid()\n"
        "    if op == 'refuse': raise InvalidRequest('not this one', code='rejected_input')\n"
        "    if op == 'crash': os.abort()\n"
        "    if op == 'hang': time.sleep(60)\n"
        "    if op == 'pickle':\n"
        "        sys.__stdout__.buffer.write(request['payload']); sys.__stdout__.buffer.flush(); time.sleep(60)\n"
        "    return request['value']\n"
        "serve_isolated(handle)\n"
    )
    process = IsolatedProcess(script(tmp_path, "engine", body), what="test engine")
    yield process
    process.stop()


def test_a_long_lived_process_keeps_running_through_answers_and_refusals(engine):
    pid = engine.call({"op": "pid"}, 30)
    assert engine.pid == pid and engine.generation == 1
    assert engine.call({"op": "echo", "value": [b"ct", np.arange(3)]}, 30)[0] == b"ct"
    with pytest.raises(InvalidRequest, match="^not this one$"):
        engine.call({"op": "refuse"}, 30)
    assert engine.call({"op": "pid"}, 30) == pid and engine.generation == 1


@pytest.mark.parametrize(("op", "message"), [("crash", "test engine failed: it ended \\(killed by SIGABRT\\)"),
                                              ("hang", "test engine did not answer within 1 s")])  # fmt: skip
def test_a_crash_or_hang_stops_the_process_and_the_next_call_starts_another(engine, op, message):
    pid = engine.call({"op": "pid"}, 30)
    with pytest.raises(ProcessLost, match=message) as info:
        engine.call({"op": op}, 1)
    assert info.value.timed_out is (op == "hang") and engine.pid is None
    assert engine.call({"op": "pid"}, 30) != pid and engine.generation == 2


@pytest.mark.parametrize("payload", ["pickle", "old-engine-frame"])
def test_a_long_lived_process_that_writes_a_pickle_is_stopped_and_nothing_runs(engine, tmp_path, payload):
    """The concrete-ml engines used to answer in pickle frames (8-byte length, then a pickle)."""
    marker = tmp_path / "ran"
    gadget = gadget_bytes(marker)
    data = gadget if payload == "pickle" else len(gadget).to_bytes(8, "little") + gadget
    pid = engine.call({"op": "pid"}, 30)
    with pytest.raises(ProcessLost, match="test engine failed: it broke the framing") as info:
        engine.call({"op": "pickle", "payload": data}, 30)
    assert info.value.code == "rejected_input" and isinstance(info.value, InvalidRequest)
    assert not marker.exists() and engine.pid is None
    assert engine.call({"op": "pid"}, 30) != pid


def test_a_forked_worker_does_not_use_its_parents_process(engine):
    engine.call({"op": "pid"}, 30)
    assert call_isolated(lambda: engine.pid, what="fork") is None
    assert engine.pid is not None

