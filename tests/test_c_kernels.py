"""The plain-C test program of the CPU kernels (tests/c/test_cpu_kernels.c),
built and run from pytest: once with the default compiler, once with clang's
address and undefined-behaviour sanitizers (required in CI)."""
import os
import re
import shutil
import subprocess

import pytest

C_TESTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "c")


def run_make(target, tmp_path):
    result = subprocess.run(["make", "-s", "-C", C_TESTS, target, f"BUILD={tmp_path}"],
                            capture_output=True, text=True, timeout=600)
    print(result.stdout[-5000:], result.stderr[-5000:])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"\d+ passed, 0 failed", summary), summary


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_cpu_kernels_c_program(tmp_path):
    run_make("test", tmp_path)


@pytest.mark.heavy
@pytest.mark.skipif(shutil.which("make") is None or
                    (shutil.which("clang") is None and not os.environ.get("CI")),
                    reason="clang is not installed (CI installs it)")
def test_cpu_kernels_c_program_under_sanitizers(tmp_path):
    run_make("asan", tmp_path)
