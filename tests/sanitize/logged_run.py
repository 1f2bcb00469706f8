"""Runs a program that may print a sanitizer report, with its output in a file.

A sanitizer report starts llvm-symbolizer, which can outlive the program and keep an
inherited pipe open, so reading a pipe (communicate()) could wait forever. The output goes
to a file instead, and the program gets its own process group, killed once it has exited
(that ends any such symbolizer).

Used by tests/test_sanitized.py and fuzz/run.py (import run_logged()).
"""
import os
import signal
import subprocess
import tempfile


def run_logged(command, env=None, cwd=None, timeout=None):
    """(status, output): the exit status, or "timeout" if it ran longer than `timeout`
    seconds (then it is killed), and stdout and stderr together."""
    with tempfile.TemporaryFile(mode="w+") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   cwd=cwd, start_new_session=True)
        try:
            status = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            status = "timeout"
        finally:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            process.wait()
        log.seek(0)
        return status, log.read()
