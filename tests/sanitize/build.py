"""Builds a sanitizer-instrumented copy of mpsnorm (libmpsnorm and every Cython module) with
clang -fsanitize=address,undefined,fuzzer-no-link, into its own directory (default
build/sanitized), through the project's own setup.py, so nothing of the regular build is
touched. A build whose sources and flags have not changed since is reused.

    python tests/sanitize/build.py [--build-base DIR]

prints the directory to put first on PYTHONPATH. Run Python against it with the ASan runtime
preloaded (CPython itself is not instrumented, so the runtime must come first):

    LD_PRELOAD=$(clang -print-file-name=libclang_rt.asan-x86_64.so) \\
    ASAN_OPTIONS=detect_leaks=0 PYTHONPATH=<printed dir> python -m pytest ...

fuzzer-no-link is libFuzzer's coverage instrumentation, for the atheris fuzzer (fuzz/run.py),
which then sees the C and Cython code's edges; the ASan runtime's default hooks make it
harmless elsewhere.

Used by tests/test_sanitized.py and fuzz/run.py (import build()).
"""
import argparse
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SANITIZERS = "address,undefined"


def asan_runtime(compiler="clang"):
    """Path of clang's shared ASan runtime (libclang_rt.asan-<arch>.so), or None."""
    if shutil.which(compiler) is None:
        return None
    arch = os.uname().machine
    result = subprocess.run([compiler, "-print-file-name=libclang_rt.asan-%s.so" % arch],
                            capture_output=True, text=True)
    path = result.stdout.strip()
    return path if result.returncode == 0 and os.path.isfile(path) else None


def _lib_dir(build_base):
    """setup.py build's platform lib directory under build_base."""
    pattern = os.path.join(build_base, "lib.*-%s*" % sys.implementation.cache_tag)
    found = [d for d in glob.glob(pattern) if os.path.isdir(os.path.join(d, "mpsnorm"))]
    if not found:
        found = [d for d in glob.glob(os.path.join(build_base, "lib*"))
                 if os.path.isdir(os.path.join(d, "mpsnorm"))]
    if not found:
        raise RuntimeError("no mpsnorm package under %s after the build" % build_base)
    return max(found, key=os.path.getmtime)


def _fingerprint(flags):
    """Hash of the flags and of every source's path, size and modification time."""
    digest = hashlib.sha256(flags.encode())
    patterns = ["setup.py", "mpsnorm/*.py", "mpsnorm/*.pyx", "mpsnorm/*.pxi", "mpsnorm/*.pxd",
                "mpsnorm/*/*.c", "mpsnorm/*/*.h", "mpsnorm/include/*.h"]
    for pattern in patterns:
        for path in sorted(glob.glob(os.path.join(REPO, pattern))):
            info = os.stat(path)
            digest.update(("%s %d %d\n" % (path, info.st_size, info.st_mtime_ns)).encode())
    return digest.hexdigest()


def build(build_base=None, log=None):
    """Builds the instrumented package (or reuses an up-to-date one); returns the directory
    holding it (for PYTHONPATH). Raises RuntimeError with the compiler's output on failure."""
    build_base = os.path.abspath(build_base or os.path.join(REPO, "build", "sanitized"))
    sanitize = SANITIZERS + ",fuzzer-no-link"
    flags = ("-fsanitize=%s -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1 "
             "-shared-libasan" % sanitize)
    stamp = os.path.join(build_base, "sources.sha256")
    fingerprint = _fingerprint(flags)
    try:
        with open(stamp) as saved:
            if saved.read() == fingerprint:
                return _lib_dir(build_base)
    except (OSError, RuntimeError):
        pass
    env = dict(os.environ)
    env.update(CC="clang", LDSHARED="clang -shared", CFLAGS=flags,
               LDFLAGS="-fsanitize=%s -shared-libasan" % sanitize)
    env.pop("CXX", None)
    command = [sys.executable, os.path.join(REPO, "setup.py"), "-q", "build",
               "--build-base", build_base, "--force"]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=1200)
    if log is not None:
        log.write(result.stdout + result.stderr)
    if result.returncode != 0:
        raise RuntimeError("sanitized build failed:\n%s\n%s" % (result.stdout[-4000:],
                                                                result.stderr[-4000:]))
    lib_dir = _lib_dir(build_base)
    library = os.path.join(lib_dir, "mpsnorm", "libmpsnorm.so")
    if sys.platform.startswith("linux") and os.path.isfile(library):
        needed = subprocess.run(["readelf", "-d", library], capture_output=True, text=True)
        if needed.returncode == 0 and "asan" not in needed.stdout:
            raise RuntimeError("%s is not linked with the ASan runtime" % library)
    with open(stamp, "w") as saved:
        saved.write(fingerprint)
    return lib_dir


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-base")
    options = parser.parse_args()
    print(build(options.build_base, log=sys.stderr))


if __name__ == "__main__":
    assert sysconfig.get_platform()  # a plain CPython build
    main()
