"""The Metal backend (objc/) runs here, on Linux, against a fake of Apple's frameworks.

tests/objc/build.py builds a test-only mpsnorm whose libmpsnorm holds the real objc/*.m
(compiled for the GNUstep Objective-C runtime, libobjc2, with the macOS build's flags) and
the fake Foundation/Metal/MPS of tests/objc/fake/ instead of metal_unavailable.c; there
mpsnorm.backends() lists "metal" and every entry point runs through objc/. This file runs,
each in a fresh interpreter with that build first on PYTHONPATH:

* tests/test_metal.py, the whole Metal suite, with MPSNORM_REQUIRE_METAL=1;
* tests/objc/fake_suite.py: every fault switch of the fake, counters, the GIL during the GPU
  wait, threads sharing an engine, no leaked object.

Heavy (MPSNORM_TEST_FULL=1): both again under AddressSanitizer, UBSan and LeakSanitizer
(leaks in the library's own code fail); the thread test with 200 calls per thread; a C
program of 8 threads sharing an engine under ThreadSanitizer (Python cannot load its runtime
on this kernel, a whole instrumented program can); the lines of objc/ the suites run (clang's
source coverage); deliberately broken copies of objc/ that the suites must fail, and planted
bugs the sanitizers must report.

The runtime is found as tests/objc/runtime.py says (MPSNORM_OBJC_RUNTIME, build/objc-runtime,
pkg-config); where it is absent these tests skip with that reason, except with CI set on
Linux (.ci/run builds it), where they fail.
"""
import glob
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
OBJC = os.path.join(REPO, "objc")


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fake_build = _load("mpsnorm_fake_metal_build", os.path.join(HERE, "objc", "build.py"))
sanitize_build = _load("mpsnorm_sanitize_build", os.path.join(HERE, "sanitize", "build.py"))
_logged_run = _load("mpsnorm_logged_run", os.path.join(HERE, "sanitize", "logged_run.py"))

LINUX = sys.platform.startswith("linux")
MUST_RUN = bool(os.environ.get("CI")) and LINUX
# Errors; leaks are sorted by own_leaks().
SANITIZER_REPORT = re.compile(r"ERROR: AddressSanitizer|runtime error:|WARNING: ThreadSanitizer")
# LeakSanitizer also lists the interpreter's own objects still alive at exit; a leak counts
# when its allocation stack passes through this repository's code.
OWN_CODE = re.compile(r"libmpsnorm\.so|%s/(objc|mpsnorm|tests/objc)/" % re.escape(REPO))


def unavailable(reason):
    if MUST_RUN:
        pytest.fail(reason + " (CI on Linux must run the fake-Metal tests: .ci/run builds "
                    "the runtime)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def runtime_prefix():
    if not LINUX:
        pytest.skip("the fake-Metal build is for Linux; a Mac runs objc/ on real Metal")
    if shutil.which("clang") is None:
        unavailable("clang is not installed")
    prefix, why = fake_build.runtime.find_runtime()
    if prefix is None:
        unavailable(why)
    return prefix


def build(variant, runtime_prefix, **options):
    try:
        return fake_build.build(variant, runtime_prefix=runtime_prefix, **options)
    except RuntimeError as error:
        pytest.fail("fake-Metal build (%s) failed:\n%s" % (variant, error))


@pytest.fixture(scope="module")
def plain_build(runtime_prefix):
    return build("plain", runtime_prefix)


def suite_env(path, **extra):
    env = dict(os.environ)
    env.pop("MPSNORM_FAKE_METAL", None)
    env.update(PYTHONPATH=os.pathsep.join([path, os.path.join(HERE, "objc")]),
               MPSNORM_REQUIRE_METAL="1")
    env.update(extra)
    return env


def run_pytest(files, env, timeout=900, expect=None):
    """Runs pytest on files (relative to tests/) in a new interpreter; returns
    (status, output, summary line)."""
    # --capture=sys: a sanitizer's report, written to file descriptor 2 as the process
    # aborts, reaches the log (pytest's default capture would swallow it with the process).
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfEs",
               "--capture=sys"] + files
    status, output = _logged_run.run_logged(command, env=env, cwd=HERE, timeout=timeout)
    lines = [line for line in output.splitlines()
             if re.search(r"\d+ (passed|failed|error)", line) and " in " in line]
    return status, output, (lines[-1].strip("= ") if lines else "(no summary)")


def assert_all_passed(status, output, summary, at_least):
    report = SANITIZER_REPORT.search(output)
    assert not report, output[max(0, report.start() - 3000):report.start() + 6000]
    assert status == 0, output[-8000:]
    assert not re.search(r"failed|error|skipped|deselected", summary), summary
    passed = int(re.match(r"(\d+) passed", summary).group(1))
    assert passed >= at_least, summary


def own_leaks(output):
    """The LeakSanitizer records whose allocation stack passes through this repository."""
    records = re.split(r"\n(?=(?:Direct|Indirect) leak of)", output)
    return [record for record in records[1:] if OWN_CODE.search(record.split("\n\n")[0])]


# ---- the default run --------------------------------------------------------------------------

def test_metal_suite_on_the_fake(plain_build):
    status, output, summary = run_pytest(["test_metal.py"], suite_env(plain_build))
    print("\ntests/test_metal.py on the fake:", summary)
    assert_all_passed(status, output, summary, at_least=137)


def test_fake_suite(plain_build):
    status, output, summary = run_pytest(["objc/fake_suite.py"], suite_env(plain_build))
    print("\ntests/objc/fake_suite.py:", summary)
    assert_all_passed(status, output, summary, at_least=150)


def test_objc_is_built_with_the_macos_flags():
    """The fake build compiles objc/ with setup.py's macOS flags (plus the runtime's)."""
    with open(os.path.join(REPO, "setup.py")) as handle:
        setup = handle.read()
    macos = re.search(r"if MACOS:.*?compile_args \+= (\[[^\]]*\])", setup, re.S)
    assert macos, "setup.py's macOS compile flags not found"
    assert sorted(eval(macos.group(1))) == sorted(fake_build.MACOS_OBJC_FLAGS)
    common = re.search(r'compile_args = (\["-O3".*?\])', setup)
    for flag in eval(common.group(1)):
        assert flag in fake_build.OBJC_FLAGS + fake_build.COMMON, flag


# ---- heavy -------------------------------------------------------------------------------------

def asan_env(path, **extra):
    runtime = sanitize_build.asan_runtime()
    if runtime is None:
        unavailable("clang's shared ASan runtime (libclang_rt.asan) is missing")
    # PYTHONMALLOC=malloc: ASan sees Python's small objects; exitcode=0: LeakSanitizer lists
    # the interpreter's leftovers too, and own_leaks() picks out this repository's.
    return suite_env(path, LD_PRELOAD=runtime, PYTHONMALLOC="malloc",
                     ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:allocator_may_return_null=1",
                     LSAN_OPTIONS="exitcode=0",
                     UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1", **extra)


@pytest.mark.heavy
def test_under_address_sanitizer(runtime_prefix):
    path = build("address", runtime_prefix)
    status, output, summary = run_pytest(["test_metal.py", "objc/fake_suite.py"],
                                         asan_env(path), timeout=1800)
    print("\nMetal suite and fake suite under ASan/UBSan/LSan:", summary)
    leaks = own_leaks(output)
    assert not leaks, "\n\n".join(leaks)[:8000]
    assert_all_passed(status, output, summary, at_least=290)


@pytest.mark.heavy
def test_thread_stress(plain_build):
    status, output, summary = run_pytest(
        ["objc/fake_suite.py", "-k", "threads or gil"],
        suite_env(plain_build, MPSNORM_FAKE_THREAD_CALLS="200"))
    assert status == 0, output[-6000:]
    assert re.fullmatch(r"2 passed, \d+ deselected in .*", summary), summary


TSAN_SUPPRESSIONS = (
    "# lock orders inside the uninstrumented Objective-C runtime (its method and selector\n"
    "# tables), not mpsnorm's\n"
    "deadlock:libobjc.so\n")


def thread_sanitized_program(tmp_path, runtime_prefix, objc_dir=None):
    if not os.path.isfile(os.popen("clang -print-file-name=libclang_rt.tsan-x86_64.a")
                          .read().strip()):
        unavailable("clang's ThreadSanitizer runtime is not installed")
    program = str(tmp_path / "threads")
    try:
        fake_build.build_program(os.path.join(HERE, "objc", "threads.c"), program,
                                 objc_dir=objc_dir, runtime_prefix=runtime_prefix)
    except RuntimeError as error:
        pytest.fail("ThreadSanitizer build failed:\n%s" % error)
    suppressions = tmp_path / "tsan.supp"
    suppressions.write_text(TSAN_SUPPRESSIONS)
    env = dict(os.environ, TSAN_OPTIONS="suppressions=%s:halt_on_error=0:exitcode=66"
               % suppressions)
    env.pop("MPSNORM_FAKE_METAL", None)
    return program, env


@pytest.mark.heavy
def test_threads_under_thread_sanitizer(tmp_path, runtime_prefix):
    program, env = thread_sanitized_program(tmp_path, runtime_prefix)
    status, output = _logged_run.run_logged([program, "200"], env=env, timeout=900)
    report = SANITIZER_REPORT.search(output)
    assert not report, output[max(0, report.start() - 2000):report.start() + 6000]
    assert status == 0, output[-4000:]
    assert output.strip().splitlines()[-1] == "8 passed, 0 failed", output[-4000:]


def llvm_tool(name):
    """llvm-profdata / llvm-cov of the clang in use (Debian names them with the version)."""
    version = os.popen("clang -dumpversion").read().strip().split(".")[0]
    return shutil.which(name) or shutil.which("%s-%s" % (name, version))


# objc/ functions no run here can reach: the answer on macOS older than 10.13.4.
UNREACHABLE_FUNCTIONS = {"mpsnorm_objc_fail_old_macos"}


@pytest.mark.heavy
def test_objc_line_coverage(tmp_path, runtime_prefix):
    """Both suites run every function of objc/ (but the old-macOS answer) and at least 90%
    of its lines; what stays unrun is out-of-memory handling and internal-error guards."""
    profdata, cov = llvm_tool("llvm-profdata"), llvm_tool("llvm-cov")
    if profdata is None or cov is None:
        unavailable("llvm-profdata and llvm-cov are not installed (Debian package llvm)")
    path = build("coverage", runtime_prefix)
    status, output, summary = run_pytest(
        ["test_metal.py", "objc/fake_suite.py"],
        suite_env(path, LLVM_PROFILE_FILE=str(tmp_path / "%p.profraw")))
    assert status == 0, output[-6000:]
    merged = str(tmp_path / "merged.profdata")
    profiles = [str(p) for p in tmp_path.glob("*.profraw")]
    result = subprocess.run([profdata, "merge", "-o", merged] + profiles, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    library = os.path.join(path, "mpsnorm", "libmpsnorm.so")
    sources = sorted(glob.glob(os.path.join(OBJC, "*.m")))
    result = subprocess.run([cov, "export", library, "-instr-profile=" + merged] + sources,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)["data"][0]
    lines = {os.path.basename(f["filename"]): f["summary"]["lines"] for f in data["files"]}
    unrun = sorted({fn["name"].split(":")[-1] for fn in data["functions"]
                    if fn["count"] == 0 and fn["filenames"][0].startswith(OBJC + os.sep)})
    print("\nobjc/ lines run by the suites: " + ", ".join(
        "%s %d/%d" % (name, line["covered"], line["count"]) for name, line in sorted(
            lines.items())))
    assert set(unrun) <= UNREACHABLE_FUNCTIONS, unrun
    covered = sum(line["covered"] for line in lines.values())
    total = sum(line["count"] for line in lines.values())
    assert covered >= 0.9 * total, (covered, total)


# Deliberately broken copies of objc/: (name, file, (text, replacement), ...). Each must
# compile and make the suites fail; each text must be found exactly once, so a mutant cannot
# go stale.
ENCODE_UNDER_LOCK = ("        status = job->encode(job, run->device, command_buffer, held->sources, "
                     "held->inputs,\n                             held->destinations, message, "
                     "size);\n    } @finally {\n")
MUTANTS = [
    ("every_image_uploaded_from_image_0", "metal_run.m",
     ("offset + i * lay->image_bytes + (size_t)s", "offset + (size_t)s")),
    ("every_slice_into_slice_0", "metal_run.m",
     ("destinationSlice:(NSUInteger)s", "destinationSlice:0")),
    ("chunks_unpacked_at_image_0", "metal_run.m",
     ("contents], at, count, &run.layout", "contents], 0, count, &run.layout")),
    ("chunks_ignore_the_working_set", "metal_run.m",
     ("uint64_t fit = per_image > 0 ? working_set / 2 / per_image : (uint64_t)n;",
      "uint64_t fit = (uint64_t)n;")),
    ("status_not_checked", "metal_run.m",
     ("if (done != MTLCommandBufferStatusCompleted) {", "if (0) {")),
    ("no_wait", "metal_run.m", ("    [command_buffer waitUntilCompleted];\n", "")),
    ("lock_held_across_the_wait", "metal_run.m",
     (ENCODE_UNDER_LOCK + "        mpsnorm_objc_unlock(job->cache);\n",
      ENCODE_UNDER_LOCK + "        if (status != MPSNORM_OK)\n"
      "            mpsnorm_objc_unlock(job->cache);\n"),
     ("    [command_buffer waitUntilCompleted];\n",
      "    [command_buffer waitUntilCompleted];\n    mpsnorm_objc_unlock(job->cache);\n")),
    ("pool_never_reused", "metal_pool.m",
     ("[images addObject:take_entry(pool, i)]; /* the entry at i is now another */", "i++;")),
    ("pool_unbounded", "metal_pool.m",
     ("while (pool->bytes > pool->limit && pool->count > 0) {", "while (0) {")),
    ("gamma_beta_of_image_0_only", "metal_instance_norm.m",
     ("[call->states objectAtIndex:(NSUInteger)i]", "[call->states objectAtIndex:0]")),
    ("gamma_beta_rows_of_the_chunk", "metal_instance_norm.m",
     ("call->dgamma_per_image + (size_t)(first + i) * row",
      "call->dgamma_per_image + (size_t)i * row")),
    ("managed_gradients_not_synchronized", "metal_instance_norm.m",
     ("[blit synchronizeResource:buffer];", "(void)buffer;")),
    ("private_gradients_read", "metal_instance_norm.m",
     ("if (mode == MTLStorageModePrivate)", "if (0)")),
    ("epsilon_not_set", "metal_instance_norm.m",
     ("    [kernel setEpsilon:params->epsilon]; /* MPS documents no default: always set */\n",
      "")),
    ("forward_encoded_without_states", "metal_run.m",
     ("destinationStates:states", "destinationStates:nil")),
    ("gradient_without_its_forward", "metal_lcn.m",
     ("lcn_call call = {params, gradient, with_forward};",
      "lcn_call call = {params, gradient, 0};")),
    ("gradient_properties_not_set", "metal_lcn.m",
     ("    SET_LCN_PROPERTIES(kernel, params);\n    [kernel setPrimaryEdgeMode",
      "    [kernel setPrimaryEdgeMode")),
    ("temporary_images_never_released", "metal_run.m",
     ("[(MPSTemporaryImage *)[results objectAtIndex:i] setReadCount:0];", "(void)i;")),
]


def mutant_copy(tmp_path, name, file, *edits):
    folder = tmp_path / name / "objc"
    shutil.copytree(OBJC, str(folder))
    path = folder / file
    source = path.read_text()
    for text, replacement in edits:
        assert source.count(text) == 1, "%s: %r is not once in objc/%s" % (name, text, file)
        source = source.replace(text, replacement)
    path.write_text(source)
    return str(folder)


@pytest.mark.heavy
@pytest.mark.parametrize("mutant", MUTANTS, ids=[m[0] for m in MUTANTS])
def test_broken_objc_fails_the_suites(mutant, tmp_path, runtime_prefix):
    objc_dir = mutant_copy(tmp_path, *mutant)
    path = build("plain", runtime_prefix, objc_dir=objc_dir,
                 build_base=str(tmp_path / mutant[0] / "build"))
    status, output, summary = run_pytest(["test_metal.py", "objc/fake_suite.py", "-x"],
                                         suite_env(path), timeout=90)
    print("\n%s: %s" % (mutant[0], summary))
    assert status != 0, "the suites passed with objc/ broken (%s)" % mutant[0]
    # a failed test, a crash (what the broken code does to the process) or a hang
    crashed = isinstance(status, int) and status < 0
    assert "failed" in summary or crashed or status == "timeout", output[-4000:]


@pytest.mark.heavy
def test_address_sanitizer_reports_planted_bugs(tmp_path, runtime_prefix):
    """A leak and a heap overflow planted in objc/ are reported (the reports are live)."""
    planted = [
        ("leak", "metal_instance_norm.m", "    free(_gamma);\n    free(_beta);\n",
         "    free(_beta);\n", "Direct leak of"),
        ("overflow", "metal_instance_norm.m",
         "[[state gradientForBeta] contents], row * sizeof(float));",
         "[[state gradientForBeta] contents], (row + 1) * sizeof(float));",
         "heap-buffer-overflow"),
    ]
    for name, file, text, replacement, expected in planted:
        objc_dir = mutant_copy(tmp_path, name, file, (text, replacement))
        path = build("address", runtime_prefix, objc_dir=objc_dir,
                     build_base=str(tmp_path / name / "build"))
        status, output, summary = run_pytest(
            ["test_metal.py", "-k", "instance_norm_gradient and float32 and NCHW"],
            asan_env(path), timeout=600)
        assert expected in output, (name, output[-4000:])
        if name == "leak":
            assert own_leaks(output), output[-4000:]


@pytest.mark.heavy
def test_thread_sanitizer_reports_a_planted_race(tmp_path, runtime_prefix):
    """With the engine cache's lock taken out, ThreadSanitizer reports the threads setting
    one kernel's properties at once (the report is live)."""
    objc_dir = mutant_copy(tmp_path, "unlocked", "metal_context.m",
                           ("    pthread_mutex_lock(&cache->lock);\n", ""))
    unlocked = os.path.join(objc_dir, "metal_context.m")
    with open(unlocked) as handle:
        source = handle.read()
    assert source.count("    pthread_mutex_unlock(&cache->lock);\n") == 1
    with open(unlocked, "w") as handle:
        handle.write(source.replace("    pthread_mutex_unlock(&cache->lock);\n", ""))
    program, env = thread_sanitized_program(tmp_path, runtime_prefix, objc_dir=objc_dir)
    status, output = _logged_run.run_logged([program, "500"], env=env, timeout=900)
    assert "WARNING: ThreadSanitizer: data race" in output, output[-4000:]
