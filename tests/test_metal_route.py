"""The C routing layer of the Metal backend (mpsnorm/core/metal_route.c), on any OS.

tests/c/test_metal_route.c links metal_route.c with a fake objc backend and checks
pass-through, staging, float16 bits, the gamma/beta batch sum, refusals and
failure handling; this file compiles it with the system C compiler and runs it,
once plainly and once under AddressSanitizer/UndefinedBehaviorSanitizer when
the compiler supports them.
"""

import os
import shutil
import subprocess

import pytest

from sources import library_sources

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the route, its self-check and the checks and kernels they use, with a fake backend instead
# of objc/ and the dispatcher
SOURCES = ["tests/c/test_metal_route.c"] + library_sources("metal_route", "checks", "kernels")
FLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-pthread",
         "-Impsnorm/include", "-Impsnorm/core", "-Impsnorm/cpu"]
SANITIZERS = ["-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"]


def c_compiler():
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def build(tmp_path, extra):
    compiler = c_compiler()
    if compiler is None:
        if os.environ.get("CI"):
            pytest.fail("no C compiler found (CI must provide cc)")
        pytest.skip("no C compiler (cc, gcc or clang) on PATH")
    binary = str(tmp_path / "test_metal_route")
    command = [compiler] + FLAGS + extra + SOURCES + ["-lm", "-o", binary]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    return command, binary, result


def run_binary(binary):
    env = dict(os.environ)
    # The out-of-memory test asks for an impossible allocation: let it fail.
    env["ASAN_OPTIONS"] = "allocator_may_return_null=1"
    return subprocess.run([binary], cwd=ROOT, capture_output=True, text=True, env=env,
                          timeout=300)


def check_output(result):
    output = result.stdout + result.stderr
    assert result.returncode == 0, "test_metal_route failed:\n" + output
    last = [line for line in result.stdout.splitlines() if line.strip()][-1]
    assert last.endswith(" passed, 0 failed"), output
    assert int(last.split()[0]) >= 9, output


def test_metal_route(tmp_path):
    command, binary, built = build(tmp_path, ["-O2"])
    assert built.returncode == 0, " ".join(command) + "\n" + built.stderr
    check_output(run_binary(binary))


def test_metal_route_sanitized(tmp_path):
    command, binary, built = build(tmp_path, SANITIZERS)
    if built.returncode != 0:
        if "sanitize" in built.stderr or "asan" in built.stderr.lower():
            pytest.skip("the C compiler cannot build with -fsanitize=address,undefined here")
        pytest.fail(" ".join(command) + "\n" + built.stderr)
    check_output(run_binary(binary))
