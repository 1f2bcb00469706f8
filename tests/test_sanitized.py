"""Sanitizers: the C core and its C test, and a subset of the Python suite, under clang's
AddressSanitizer and UndefinedBehaviorSanitizer.

* C: every source of libmpsnorm (mpsnorm/core, mpsnorm/cpu) and tests/c/test_c_api.c
  compiled into one program with -fsanitize=address,undefined -fno-sanitize-recover=all and
  run with LeakSanitizer on (a plain C program must free everything), once per instruction
  set the kernels can pick here (MPSNORM_ISA). The C program checks both gradients, every
  status path, zero sizes and threads sharing an engine.
* Python: the package rebuilt instrumented by tests/sanitize/build.py (its own build
  directory), then the bad-input, kernel, property and concurrency tests run against it with
  the ASan runtime preloaded. Settings, and why:
    - PYTHONMALLOC=malloc: Python objects (gamma/beta bytes, arrays' headers) come from
      malloc, so ASan puts redzones around them too (pymalloc's arenas would hide an
      over-read of a small object).
    - ASAN_OPTIONS=detect_leaks=0: CPython does not free its interned strings, static types
      and module state at exit, by design, so LeakSanitizer would report thousands of
      interpreter allocations; mpsnorm's own leaks are measured by tests/test_leaks.py
      (RSS and reference counts) and by LeakSanitizer in the C program above.
    - allocator_may_return_null=1: the bad-input matrix asks NumPy for 36 TiB to check the
      MemoryError; without it ASan aborts on the request instead of returning NULL as malloc
      does.
  A canary first proves the instrumentation is live: an out-of-bounds read through the C
  ABI must be reported as a heap-buffer-overflow.

With CI set on Linux, a missing clang or a failed build is a failure, not a skip.
"""

import glob
import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.heavy  # minutes: MPSNORM_TEST_FULL=1 (conftest.py)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def _load_sanitize_helper(name):
    """tests/sanitize/<name>.py, loaded by path (a module named `build` exists on PyPI)."""
    spec = importlib.util.spec_from_file_location(
        "mpsnorm_sanitize_" + name, os.path.join(HERE, "sanitize", name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sanitize_build = _load_sanitize_helper("build")
_logged_run = _load_sanitize_helper("logged_run")

CI = bool(os.environ.get("CI")) and sys.platform.startswith("linux")
HAVE_CLANG = shutil.which("clang") is not None
needs_clang = pytest.mark.skipif(not HAVE_CLANG and not CI,
                                 reason="clang is not installed (CI installs it)")
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the preloaded ASan runtime setup is Linux's")

SANITIZER_REPORT = re.compile(r"ERROR: (Address|Leak)Sanitizer|runtime error:|"
                              r"SUMMARY: \w+Sanitizer")

# The Python subset run instrumented (about 70 s), with smaller loops where the file allows.
PYTHON_SUBSET = ["test_bad_input.py", "test_bad_input_matrix.py", "test_parameters.py",
                 "test_lcn.py", "test_lcn_gradient.py", "test_instance_norm.py",
                 "test_instance_norm_gradient.py", "test_properties.py", "test_concurrency.py"]
SUBSET_ENV = {"MPSNORM_HYPOTHESIS_EXAMPLES": "40", "MPSNORM_CONCURRENCY_CALLS": "100"}


def run_logged(command, env, cwd=HERE, timeout=600):
    """(status, output) of command run from cwd (tests/sanitize/logged_run.py); running
    longer than `timeout` seconds fails the test."""
    status, output = _logged_run.run_logged(command, env=env, cwd=cwd, timeout=timeout)
    if status == "timeout":
        pytest.fail(f"{command[0]} ran longer than {timeout} s:\n{output[-3000:]}")
    return status, output


def last_summary(output, pattern):
    lines = [line for line in output.splitlines() if re.search(pattern, line)]
    return lines[-1].strip() if lines else "(no summary line)"


def isa_choices():
    """The MPSNORM_ISA values worth running here (the kernels fall back if one is absent)."""
    choices = ["portable"]
    try:
        with open("/proc/cpuinfo") as info:
            flags = info.read()
    except OSError:
        flags = ""
    if re.search(r"\bavx2\b", flags) and re.search(r"\bf16c\b", flags):
        choices.append("avx2")
    if re.search(r"\bavx512bw\b", flags):
        choices.append("avx512")
    return choices


@needs_clang
@pytest.mark.parametrize("isa", isa_choices())
def test_c_core_and_c_api_program_under_sanitizers(tmp_path, isa):
    sources = sorted(glob.glob(os.path.join(REPO, "mpsnorm", "core", "*.c")) +
                     glob.glob(os.path.join(REPO, "mpsnorm", "cpu", "*.c")))
    program = str(tmp_path / "test_c_api_sanitized")
    command = ["clang", "-std=c99", "-g", "-O1", "-fno-omit-frame-pointer", "-pthread",
               "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
               "-DMPSNORM_BUILDING=1"] + \
              ["-I" + os.path.join(REPO, "mpsnorm", d) for d in ("include", "core", "cpu")] + \
              sources + [os.path.join(HERE, "c", "test_c_api.c"), "-lm", "-o", program]
    built = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-4000:]
    leaks = 1 if sys.platform.startswith("linux") else 0  # LeakSanitizer: Linux only
    env = dict(os.environ, MPSNORM_ISA=isa,
               ASAN_OPTIONS="detect_leaks=%d:halt_on_error=1:abort_on_error=0" % leaks,
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    status, output = run_logged([program], env)
    assert not SANITIZER_REPORT.search(output), output[-6000:]
    assert status == 0, output[-4000:]
    summary = last_summary(output, r"^\d+ passed, \d+ failed$")
    assert re.fullmatch(r"\d+ passed, 0 failed", summary), summary


@pytest.fixture(scope="module")
def sanitized_package(tmp_path_factory):
    if not HAVE_CLANG:
        if CI:
            pytest.fail("clang is required in CI for the sanitized build")
        pytest.skip("clang is not installed (CI installs it)")
    runtime = sanitize_build.asan_runtime()
    if runtime is None:
        if CI:
            pytest.fail("clang's shared ASan runtime (libclang_rt.asan) is missing")
        pytest.skip("clang's shared ASan runtime is not installed")
    lib_dir = sanitize_build.build()
    env = dict(os.environ)
    env.update(SUBSET_ENV)
    env.update(LD_PRELOAD=runtime, PYTHONPATH=lib_dir, PYTHONMALLOC="malloc",
               ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:halt_on_error=1",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    status, where = run_logged([sys.executable, "-c", "import mpsnorm; print(mpsnorm.__file__)"],
                               env, timeout=300)
    assert status == 0, where[-3000:]
    assert where.strip().splitlines()[-1].startswith(lib_dir), where[-3000:]
    return env


CANARY = r"""
import ctypes, os, mpsnorm

class Tensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("dtype", ctypes.c_int32),
                ("shape", ctypes.c_int64 * 4), ("strides", ctypes.c_int64 * 4)]

class Params(ctypes.Structure):
    _fields_ = [("kernel_width", ctypes.c_int64), ("kernel_height", ctypes.c_int64)] + \
               [(name, ctypes.c_float) for name in ("alpha", "beta", "delta", "p0", "pm", "ps")]

lib = ctypes.CDLL(os.path.join(mpsnorm.get_library_dir(), "libmpsnorm.so"))
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
small, big = libc.malloc(16 * 4), libc.malloc(64 * 4)   # x claims 64 floats, has 16
x = Tensor(small, 0, (1, 1, 8, 8), (64, 64, 8, 1))
y = Tensor(big, 0, (1, 1, 8, 8), (64, 64, 8, 1))
params = Params()
lib.mpsnorm_lcn_params_init(ctypes.byref(params), ctypes.c_int64(3), ctypes.c_int64(3))
lib.mpsnorm_lcn_forward(None, ctypes.byref(params), ctypes.byref(x), ctypes.byref(y), None)
print("no report")
"""


@needs_clang
@linux_only
def test_sanitizer_canary(sanitized_package):
    status, output = run_logged([sys.executable, "-c", CANARY], sanitized_package, timeout=300)
    assert "heap-buffer-overflow" in output, (status, output[-3000:])
    assert "no report" not in output and status != 0


@needs_clang
@linux_only
def test_python_subset_under_sanitizers(sanitized_package):
    status, output = run_logged([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
                                + PYTHON_SUBSET, sanitized_package, timeout=1800)
    report = SANITIZER_REPORT.search(output)
    assert not report, output[max(0, report.start() - 2000):report.start() + 6000]
    assert status == 0, output[-6000:]
    summary = last_summary(output, r"\d+ passed")
    print("\nsanitized subset:", summary)
    assert not re.search(r"\d+ (failed|error)", summary), summary


def test_subset_files_exist():
    missing = [name for name in PYTHON_SUBSET if not os.path.isfile(os.path.join(HERE, name))]
    assert not missing, missing
