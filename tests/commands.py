"""The command lines the tests run (dbt, dbt-stripe-sync): each in a process of its own,
forked from a warm server that imported dbt-core and its adapters once.

A fresh CLI process spends about 3 s of CPU importing dbt-core and its adapters before it
does anything, and the suite runs hundreds of them on two cores: most of its time. With
`enable()` (tests/conftest.py calls it), multiprocessing's forkserver imports those modules
once, in a single-threaded server, and forks one process per command. The command still
runs as a user runs it: a process of its own, the real console-script entry point, its own
environment, working directory, stdin, stdout and stderr, its exit code. Only the imports
are shared. DSA_TEST_FORK=0 runs every command through subprocess instead; the benchmark
never enables this (it times whole commands, start-up included).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
# The console scripts served from the warm server: program name -> (module, attribute).
_ENTRY_POINTS = {
    "dbt": ("dbt.cli.main", "cli"),
    "dbt-stripe-sync": ("dbt_stripe_activation.cli", "main"),
}
_context: Any = None


def enable() -> None:
    """Serve the console scripts from a warm forkserver (unless DSA_TEST_FORK=0)."""
    global _context
    if os.environ.get("DSA_TEST_FORK", "1") == "0" or _context is not None:
        return
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tests.command_preload"])
    _context = context


def run(argv: Sequence[str], *, cwd: Path | str, env: Mapping[str, str],
        timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """`argv` in `cwd` with exactly `env`, output captured as text: subprocess.run's contract
    (TimeoutExpired past `timeout`), forked from the warm server when enabled."""
    program = Path(argv[0])
    if _context is None or program.parent != BIN or program.name not in _ENTRY_POINTS:
        return subprocess.run(list(argv), cwd=cwd, env=dict(env), capture_output=True,
                               text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory(prefix="dsa-cmd-") as scratch:
        out, err = os.path.join(scratch, "stdout"), os.path.join(scratch, "stderr")
        process = _context.Process(
            target=_command_main,
            args=(program.name, list(argv[1:]), str(cwd), dict(env), out, err),
        )
        process.start()
        process.join(timeout)
        timed_out = process.is_alive()
        if timed_out:
            process.kill()
            process.join()
        stdout, stderr = _read(out), _read(err)
        if timed_out:
            raise subprocess.TimeoutExpired(list(argv), timeout or 0, stdout, stderr)
        return subprocess.CompletedProcess(list(argv), process.exitcode or 0, stdout, stderr)


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except FileNotFoundError:
        return ""


def _command_main(name: str, args: list[str], cwd: str, env: dict[str, str], out: str,
                  err: str) -> None:
    """In the forked process: become the command (cwd, environment, file descriptors), run
    its entry point as its console script would, and exit with its code."""
    code = 1
    try:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        stdin = os.open(os.devnull, os.O_RDONLY)
        os.dup2(stdin, 0)
        for fd, path in ((1, out), (2, err)):
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(handle, fd)
            os.close(handle)
        sys.argv = [str(BIN / name), *args]
        module, attribute = _ENTRY_POINTS[name]
        entry = getattr(__import__(module, fromlist=[attribute]), attribute)
        try:
            entry.main(args=args, prog_name=name)  # click: always ends in SystemExit
            code = 0
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:  # sys.exit("message"), as the interpreter reports it
                print(exc.code, file=sys.stderr)
                code = 1
    except BaseException:  # noqa: BLE001 - an uncaught error, as the interpreter reports it
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # a closed stream has nothing left to write
                stream.flush()
        os._exit(code)
