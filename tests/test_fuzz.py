"""Fuzzing, bounded: fuzz/run.py runs the libFuzzer harness of the C ABI
(fuzz/c_abi_fuzzer.c, ASan + UBSan) and the atheris harness of the Python API
(fuzz/python_fuzzer.py, against the instrumented build where clang is present), each from its
corpus in fuzz/corpus/, for MPSNORM_FUZZ_SECONDS each (default 60 with CI set, 15 otherwise).
A crash fails the test with the crashing input saved under build/fuzz/artifacts/.

With CI set on Linux a missing tool (clang with libFuzzer, atheris) is a failure; elsewhere
(and on macOS, whose Apple clang has no libFuzzer and where atheris has no wheel) a skip.
"""
import os
import re
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.heavy  # minutes: MPSNORM_TEST_FULL=1 (conftest.py)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RUNNER = os.path.join(REPO, "fuzz", "run.py")
CI = bool(os.environ.get("CI")) and sys.platform.startswith("linux")
SECONDS = int(os.environ.get("MPSNORM_FUZZ_SECONDS", "60" if CI else "15"))


def missing(reason):
    if CI:
        pytest.fail("CI needs %s" % reason)
    pytest.skip(reason)


def run_target(target):
    result = subprocess.run([sys.executable, RUNNER, "--target", target, "--seconds",
                             str(SECONDS)], capture_output=True, text=True,
                            timeout=SECONDS + 1800, cwd=REPO)
    lines = result.stdout.strip().splitlines()
    summary = [line for line in lines if line.startswith("%s fuzzer:" % (
        "c_abi" if target == "c" else "python"))]
    if result.returncode == 2:
        missing(summary[-1] if summary else "a fuzzing tool")
    assert result.returncode == 0, "\n".join(lines[-60:]) + result.stderr[-3000:]
    print("\n" + "\n".join(lines[-2:]))
    assert summary and "no crash" in summary[-1], lines[-5:]
    execs = int(re.search(r"(\d+) execs", summary[-1]).group(1))
    assert execs > 0, summary[-1]
    return summary[-1]


def test_c_abi_fuzzer_bounded_run():
    if shutil.which("clang") is None:
        missing("clang (apt-get install clang) for the libFuzzer harness")
    run_target("c")


def test_python_fuzzer_bounded_run():
    try:
        import atheris  # noqa: F401
    except ImportError:
        missing("atheris (pip install atheris) for the Python harness")
    run_target("python")


@pytest.mark.parametrize("target", ["c_abi", "python"])
def test_corpus_is_in_the_repository(target):
    corpus = os.path.join(REPO, "fuzz", "corpus", target)
    files = [os.path.join(corpus, name) for name in os.listdir(corpus)]
    assert files, "empty corpus %s" % corpus
    size = sum(os.path.getsize(path) for path in files)
    assert size < 2 << 20, "corpus %s is %d bytes (keep it small)" % (corpus, size)
