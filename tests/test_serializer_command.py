"""``python -m addrbus.serializer generate``: autobus's key command, run as a user runs it."""

from __future__ import annotations

import subprocess
import sys

from cryptography.fernet import Fernet

TIMEOUT = 60.0  # seconds, for a command that takes well under one


def run(*args: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "addrbus.serializer", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)


def test_generate_prints_one_new_fernet_key_each_time_and_nothing_else() -> None:
    """(That a bus takes the key is ``tests/test_hostile_compat.py``.)"""
    first, second = run("generate"), run("generate")
    for done in (first, second):
        assert (done.returncode, done.stderr) == (0, "")
        assert done.stdout.endswith("\n") and done.stdout.count("\n") == 1
        key = done.stdout.strip()
        assert Fernet(key).decrypt(Fernet(key).encrypt(b"x")) == b"x"
    assert first.stdout != second.stdout


def test_without_a_command_or_with_another_it_prints_usage_and_exits_2() -> None:
    for args in ((), ("generat",), ("generate", "extra")):
        done = run(*args)
        assert done.returncode == 2, args
        assert done.stdout == ""
        assert "usage: python -m addrbus.serializer" in done.stderr


def test_help_names_the_command() -> None:
    done = run("--help")
    assert done.returncode == 0
    assert "generate" in done.stdout


def test_without_cryptography_it_says_what_to_install_and_exits_2() -> None:
    blocked = (
        "import runpy, sys; sys.modules['cryptography'] = None; sys.argv[0] = 'addrbus.serializer';"
        " runpy.run_module('addrbus.serializer', run_name='__main__')"
    )
    done = run("generate", code=blocked)
    assert done.returncode == 2
    assert done.stdout == ""
    assert "addrbus[crypto]" in done.stderr
    assert "Traceback" not in done.stderr
