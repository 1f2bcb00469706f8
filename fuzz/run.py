"""Builds and runs mpsnorm's fuzzers for a bounded time.

    python fuzz/run.py [--target c|python|all] [--seconds N] [--merge]

c       fuzz/c_abi_fuzzer.c: libFuzzer on the public C ABI, built with
        clang -fsanitize=fuzzer,address,undefined from every libmpsnorm source.
python  fuzz/python_fuzzer.py: atheris on the Python API. With clang and its ASan runtime
        present, against the instrumented build of tests/sanitize/build.py (ASan, UBSan and
        coverage of libmpsnorm and the Cython modules, with atheris's ASan+libFuzzer runtime
        preloaded); otherwise against the regular build (Python-level coverage only).

Each run starts from the corpus in fuzz/corpus/<target>/ (read only) and writes new inputs
to build/fuzz/new-<target>/; --merge adds those that reach new coverage to the repository
corpus afterwards. Crashing inputs go to build/fuzz/artifacts/. The last line per target is
"<target> fuzzer: <execs> execs in <s> s, corpus <n> files, no crash" (or the crash).
Exit status: 0 clean, 1 a crash or a failed build, 2 a tool is missing.
"""
import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
WORK = os.path.join(REPO, "build", "fuzz")
ARTIFACTS = os.path.join(WORK, "artifacts")


class Missing(Exception):
    """A tool the target needs is not installed."""


def test_helper(path):
    """tests/<path>.py, loaded by path (a module named `build` exists on PyPI)."""
    spec = importlib.util.spec_from_file_location(
        "mpsnorm_tests_" + path.replace("/", "_"), os.path.join(REPO, "tests", path + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sanitize_helper(name):
    return test_helper("sanitize/" + name)


def run_logged(command, env=None, timeout=None):
    """(status, output) of command run from the work directory, its output in a file
    (tests/sanitize/logged_run.py)."""
    return sanitize_helper("logged_run").run_logged(command, env=env, cwd=WORK,
                                                    timeout=timeout)


def stats(output):
    execs = re.search(r"stat::number_of_executed_units:\s*(\d+)", output)
    coverage = re.findall(r"\bcov: (\d+)", output)
    return (int(execs.group(1)) if execs else 0), (int(coverage[-1]) if coverage else None)


def libfuzzer_options(seconds, target):
    return ["-max_total_time=%d" % seconds, "-print_final_stats=1", "-timeout=30",
            "-rss_limit_mb=4096", "-artifact_prefix=%s/%s-" % (ARTIFACTS, target)]


def fresh_dir(name):
    path = os.path.join(WORK, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def build_c():
    if shutil.which("clang") is None:
        raise Missing("clang is not installed (apt-get install clang)")
    sources = test_helper("sources").library_sources("kernels", "checks", "dispatch",
                                                     "metal_route", "no_metal")
    binary = os.path.join(WORK, "c_abi_fuzzer")
    command = ["clang", "-std=c11", "-g", "-O1", "-fno-omit-frame-pointer", "-pthread",
               "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=undefined",
               "-DMPSNORM_BUILDING=1"] + \
              ["-I" + os.path.join(REPO, "mpsnorm", d) for d in ("include", "core", "cpu")] + \
              [os.path.join(HERE, "c_abi_fuzzer.c")] + sources + ["-lm", "-o", binary]
    built = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if built.returncode != 0:
        if "fuzzer" in built.stderr and "unsupported" in built.stderr:
            raise Missing("this clang cannot link -fsanitize=fuzzer: " + built.stderr[-500:])
        raise RuntimeError("building the C fuzzer failed:\n" + built.stderr[-4000:])
    return binary


def run_c(seconds, merge):
    binary = build_c()
    corpus = os.path.join(HERE, "corpus", "c_abi")
    new = fresh_dir("new-c_abi")
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1",
               UBSAN_OPTIONS="print_stacktrace=1")
    started = time.time()
    status, output = run_logged([binary] + libfuzzer_options(seconds, "c_abi") + [new, corpus],
                                env=env, timeout=seconds + 600)
    return finish("c_abi", binary, status, output, started, corpus, new, merge, env)


def sanitized_python_env():
    """Environment running Python against the instrumented build with atheris's runtime, or
    None when clang / the runtime is unavailable."""
    import atheris
    runtime = os.path.join(atheris.path(), "asan_with_fuzzer.so")
    if shutil.which("clang") is None or not os.path.isfile(runtime):
        return None
    lib_dir = sanitize_helper("build").build()
    # The instrumented libraries need libclang_rt.asan-<arch>.so; this name for atheris's
    # runtime makes the loader reuse the preloaded file instead of loading a second ASan.
    alias_dir = os.path.join(WORK, "runtime")
    os.makedirs(alias_dir, exist_ok=True)
    alias = os.path.join(alias_dir, "libclang_rt.asan-%s.so" % os.uname().machine)
    if os.path.lexists(alias):
        os.remove(alias)
    os.symlink(runtime, alias)
    return dict(os.environ, LD_PRELOAD=runtime, LD_LIBRARY_PATH=alias_dir, PYTHONPATH=lib_dir,
                PYTHONMALLOC="malloc",
                ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1",
                UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")


def run_python(seconds, merge, sanitized=True):
    try:
        import atheris  # noqa: F401
    except ImportError:
        raise Missing("atheris is not installed (pip install atheris)") from None
    env = sanitized_python_env() if sanitized and sys.platform.startswith("linux") else None
    mode = "instrumented build" if env else "regular build, Python coverage only"
    env = env or dict(os.environ)
    corpus = os.path.join(HERE, "corpus", "python")
    new = fresh_dir("new-python")
    command = [sys.executable, os.path.join(HERE, "python_fuzzer.py")] + \
        libfuzzer_options(seconds, "python") + [new, corpus]
    started = time.time()
    status, output = run_logged(command, env=env, timeout=seconds + 600)
    print("python fuzzer ran against the %s" % mode)
    return finish("python", command[:2], status, output, started, corpus, new, merge, env)


def finish(target, binary, status, output, started, corpus, new, merge, env):
    execs, coverage = stats(output)
    elapsed = time.time() - started
    files = len(os.listdir(corpus)) if os.path.isdir(corpus) else 0
    if status != 0:
        crash = re.findall(r"Test unit written to (\S+)", output)
        print(output[-8000:])
        print("%s fuzzer: CRASH after %d execs in %.0f s (status %s)%s"
              % (target, execs, elapsed, status, "; input: " + crash[-1] if crash else ""))
        return 1
    if merge and os.listdir(new):
        command = (binary if isinstance(binary, list) else [binary]) + ["-merge=1", corpus, new]
        merged, merge_output = run_logged(command, env=env, timeout=1800)
        if merged != 0:
            print(merge_output[-4000:])
            return 1
        files = len(os.listdir(corpus))
    print("%s fuzzer: %d execs in %.0f s, coverage %s, corpus %d files, no crash"
          % (target, execs, elapsed, coverage, files))
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=["c", "python", "all"], default="all")
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--merge", action="store_true",
                        help="add inputs that reach new coverage to fuzz/corpus/")
    parser.add_argument("--no-sanitize", action="store_true",
                        help="python: use the regular build even where clang is present")
    options = parser.parse_args()
    os.makedirs(ARTIFACTS, exist_ok=True)
    results = []
    targets = ["c", "python"] if options.target == "all" else [options.target]
    for target in targets:
        try:
            if target == "c":
                result = run_c(options.seconds, options.merge)
            else:
                result = run_python(options.seconds, options.merge, not options.no_sanitize)
        except Missing as missing:
            print("%s fuzzer: MISSING TOOL: %s" % (target, missing))
            result = 2
        except RuntimeError as error:
            print("%s fuzzer: BUILD FAILED: %s" % (target, error))
            result = 1
        results.append(result)
    return 1 if 1 in results else 2 if 2 in results else 0


if __name__ == "__main__":
    sys.exit(main())
