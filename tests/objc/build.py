"""Builds mpsnorm with the real Metal backend (objc/*.m) running against the fake
Foundation/Metal/MPS of tests/objc/fake/, on the GNUstep Objective-C runtime (libobjc2,
tests/objc/runtime.py): a test-only copy of the package, never installed or shipped.

    python tests/objc/build.py [--variant plain|address|thread] [--objc DIR]

prints the directory to put first on PYTHONPATH. Only libmpsnorm is built here: the
library's sources (mpsnorm/sources.txt, with the "metal" group instead of "no_metal"), the
fakes and the runtime; the package's other files, the Cython modules included, are copied
from the mpsnorm this interpreter imports (they load libmpsnorm beside them through their
$ORIGIN rpath). objc/ is compiled with the flags of the macOS build (setup.py) plus what
the GNUstep runtime needs: clang -fobjc-runtime=gnustep-2.0 -fobjc-arc -fobjc-exceptions
-fexceptions -DMPSNORM_OBJC_DECLARATIONS -Itests/objc.

Variants: plain; address (ASan + UBSan: run Python with the ASan runtime preloaded, as
tests/sanitize/build.py explains); thread (ThreadSanitizer: preload its runtime). --objc
builds another copy of objc/ (a deliberately broken one, in the tests) instead of the real.
A build whose inputs have not changed is reused.
"""
import argparse
import concurrent.futures
import glob
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))
from sources import library_sources  # noqa: E402  (tests/sources.py)

sys.path.pop(0)

_spec = importlib.util.spec_from_file_location("mpsnorm_objc_runtime",
                                               os.path.join(HERE, "runtime.py"))
runtime = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(runtime)

INCLUDES = ["-I" + os.path.join(REPO, "mpsnorm", d) for d in ("include", "core", "cpu")]
COMMON = ["-fvisibility=hidden", "-Wall", "-Wextra", "-DMPSNORM_BUILDING=1", "-fPIC"]
C_FLAGS = ["-std=c99", "-O2"]
# setup.py's macOS flags for objc/ (-O3 -fvisibility=hidden -Wall -Wextra -fobjc-arc
# -fobjc-arc-exceptions, the includes and MPSNORM_BUILDING), plus what this runtime and the
# declarations need (tests/test_metal_fake.py checks that the two agree).
MACOS_OBJC_FLAGS = ["-fobjc-arc", "-fobjc-arc-exceptions"]
OBJC_FLAGS = ["-O3"] + MACOS_OBJC_FLAGS + ["-fobjc-runtime=gnustep-2.0", "-fobjc-exceptions",
              "-fexceptions", "-DMPSNORM_OBJC_DECLARATIONS", "-I" + HERE]
FAKE_FLAGS = OBJC_FLAGS[1:] + ["-O1", "-Werror", "-Wno-objc-root-class",
                               "-Wno-objc-designated-initializers",
                               "-I" + os.path.join(HERE, "fake")]
VARIANTS = {
    "plain": ([], []),
    "address": (["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
                 "-fno-omit-frame-pointer", "-g", "-shared-libasan"],
                ["-fsanitize=address,undefined", "-shared-libasan"]),
    "thread": (["-fsanitize=thread", "-fno-omit-frame-pointer", "-g"], ["-fsanitize=thread"]),
}
LIBRARY_FILE = "libmpsnorm.so"


def fake_sources():
    return sorted(glob.glob(os.path.join(HERE, "fake", "*.m")) +
                  glob.glob(os.path.join(HERE, "fake", "*.c")))


def fake_headers():
    return sorted(glob.glob(os.path.join(HERE, "fake", "*.h")) +
                  [os.path.join(HERE, "mps_declarations.h")])


def package_dir():
    """The directory of the mpsnorm this interpreter imports (its compiled modules are reused)."""
    spec = importlib.util.find_spec("mpsnorm")
    if spec is None or not spec.origin:
        raise RuntimeError("mpsnorm is not importable: install it first (pip install -e .)")
    return os.path.dirname(spec.origin)


def _compile_jobs(objc_dir, variant_flags, objects):
    jobs = []
    plain_c = library_sources("kernels", "checks", "dispatch", "metal_route")
    metal = sorted(glob.glob(os.path.join(objc_dir, "*.m"))) if objc_dir else \
        library_sources("metal")
    if not metal:
        raise RuntimeError("no Objective-C sources (objc/*.m) to build")
    objc_include = ["-I" + (objc_dir or os.path.join(REPO, "objc"))]
    for index, path in enumerate(plain_c + metal + fake_sources()):
        if path in plain_c:
            flags = C_FLAGS
        elif path in metal:
            flags = OBJC_FLAGS + objc_include
        else:
            flags = (["-std=c99", "-O1", "-Werror"] if path.endswith(".c") else FAKE_FLAGS)
        target = os.path.join(objects, "%03d_%s.o" % (index, os.path.basename(path)))
        jobs.append((["clang", "-c"] + COMMON + INCLUDES + flags + variant_flags +
                     [path, "-o", target], target))
    return jobs, metal


def _fingerprint(parts, paths):
    digest = hashlib.sha256(repr(parts).encode())
    for path in sorted(paths):
        info = os.stat(path)
        digest.update(("%s %d %d\n" % (path, info.st_size, info.st_mtime_ns)).encode())
    return digest.hexdigest()


def _copy_package(source, target):
    """Every file of the installed package except libmpsnorm (and caches, C intermediates)."""
    if os.path.isdir(target):
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(
        "__pycache__", LIBRARY_FILE, "libmpsnorm.dylib", "_*.c"))


def build(variant="plain", objc_dir=None, build_base=None, runtime_prefix=None, log=None):
    """Builds (or reuses) the fake-Metal package; returns the directory for PYTHONPATH.
    Raises RuntimeError with the compiler's output on failure."""
    if variant not in VARIANTS:
        raise ValueError("variant must be one of %s, got %r" % (sorted(VARIANTS), variant))
    if runtime_prefix is None:
        runtime_prefix, why = runtime.find_runtime()
        if runtime_prefix is None:
            raise RuntimeError(why)
    name = variant if objc_dir is None else "%s-%s" % (variant, os.path.basename(objc_dir))
    build_base = os.path.abspath(build_base or os.path.join(REPO, "build", "fake-metal", name))
    compile_flags, link_flags = VARIANTS[variant]
    objects = os.path.join(build_base, "objects")
    jobs, metal = _compile_jobs(objc_dir, compile_flags, objects)
    installed = package_dir()
    inputs = [path for job in jobs for path in job[0] if os.path.isfile(path)]
    inputs += fake_headers() + glob.glob(os.path.join(REPO, "mpsnorm", "*", "*.h"))
    inputs += glob.glob(os.path.join(objc_dir or os.path.join(REPO, "objc"), "*.h"))
    inputs += [p for p in glob.glob(os.path.join(installed, "*")) if os.path.isfile(p)]
    inputs.append(os.path.join(runtime_prefix, runtime.LIBRARY))
    fingerprint = _fingerprint([job[0] for job in jobs] + [link_flags, runtime_prefix],
                               inputs)
    stamp = os.path.join(build_base, "inputs.sha256")
    library = os.path.join(build_base, "mpsnorm", LIBRARY_FILE)
    if os.path.isfile(stamp) and os.path.isfile(library):
        with open(stamp) as saved:
            if saved.read() == fingerprint:
                return build_base
    os.makedirs(objects, exist_ok=True)
    if os.path.exists(stamp):
        os.remove(stamp)

    def run(command):
        return command, subprocess.run(command, capture_output=True, text=True, timeout=600)

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(run, [job[0] for job in jobs]))
    for command, result in results:
        if log is not None and result.stderr:
            log.write(result.stderr)
        if result.returncode != 0:
            raise RuntimeError("%s\n%s" % (" ".join(command), result.stderr[-6000:]))
    _copy_package(installed, os.path.join(build_base, "mpsnorm"))
    lib_dir = os.path.join(runtime_prefix, "lib")
    link = (["clang", "-shared", "-o", library] + [job[1] for job in jobs] + link_flags +
            ["-L" + lib_dir, "-lobjc", "-lm", "-lpthread", "-Wl,-rpath," + lib_dir,
             "-Wl,-soname," + LIBRARY_FILE, "-Wl,--no-undefined"])
    result = subprocess.run(link, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError("%s\n%s" % (" ".join(link), result.stderr[-6000:]))
    with open(stamp, "w") as saved:
        saved.write(fingerprint)
    return build_base


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="plain", choices=sorted(VARIANTS))
    parser.add_argument("--objc", help="a copy of objc/ to build instead of the real one")
    parser.add_argument("--build-base")
    options = parser.parse_args()
    try:
        print(build(options.variant, options.objc, options.build_base, log=sys.stderr))
    except RuntimeError as error:
        sys.exit("tests/objc/build.py: %s" % error)


if __name__ == "__main__":
    main()
