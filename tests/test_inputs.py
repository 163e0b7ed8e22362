"""Reading a user's files (rusir.data.inputs): a named pipe, a device or a folder named like an image
or a landmarks file is refused in one line before it is opened (opening a FIFO blocks forever)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from rusir.data.images import ImageFileError, load_image, open_image
from rusir.data.inputs import regular_file
from rusir.restore_files import read_landmarks

ROOT = Path(__file__).resolve().parents[1]
HANG_GUARD_S = 300     # only against a hang: a refusal takes about a second


@pytest.fixture
def fifo(tmp_path) -> Path:
    path = tmp_path / "x.png"
    os.mkfifo(path)
    return path


def test_regular_files_and_links_to_them_pass(tmp_path):
    image = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(image)
    (tmp_path / "link.png").symlink_to(image)
    assert regular_file(tmp_path / "link.png") == tmp_path / "link.png"
    assert regular_file(str(image)) == image                  # a str path is a Path
    with pytest.raises(FileNotFoundError, match="no such"):
        regular_file(tmp_path / "missing.png")


def test_a_device_a_socket_and_a_folder_are_refused_by_kind(tmp_path):
    """(A pipe too, in processes of their own below: opening one in this process would hang it.)"""
    folder = tmp_path / "dir.png"
    folder.mkdir()
    sock_path = tmp_path / "s.png"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        cases = {Path("/dev/zero"): "character device", folder: "folder", sock_path: "socket"}
        for path, kind in cases.items():
            for read in (open_image, lambda p: load_image(p, 8)):
                with pytest.raises(ImageFileError, match=kind) as info:
                    read(path)
                assert str(path) in str(info.value) and "\n" not in str(info.value)
            with pytest.raises(ValueError, match=kind):
                read_landmarks(path, [tmp_path / "a.png"])


def guarded(*args: str) -> subprocess.CompletedProcess:
    """`python *args` in a process of its own: a regression hangs it, and the guard ends it."""
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=HANG_GUARD_S, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_the_python_api_refuses_a_fifo(fifo):
    code = ("import sys; from rusir.data.images import load_image; from rusir.restore_files import "
            "read_landmarks\nfor call in (lambda: load_image(sys.argv[1], 8), lambda: "
            "read_landmarks(sys.argv[1], [sys.argv[1]])):\n    try: call()\n"
            "    except ValueError as exc: print(exc)")
    run = guarded("-c", code, str(fifo))
    lines = run.stdout.strip().splitlines()
    assert run.returncode == 0 and len(lines) == 2, run.stdout + run.stderr
    assert all(str(fifo) in line and "named pipe" in line for line in lines), lines


def test_restore_refuses_a_fifo_in_one_line(tmp_path, fifo):
    run = guarded("-m", "rusir", "restore", str(fifo), "--task", "denoising",
                  "--out", str(tmp_path / "out"), "--steps", "1,1,1")
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and str(fifo) in lines[0] and "named pipe" in lines[0], run.stderr
    assert not (tmp_path / "out").exists()
