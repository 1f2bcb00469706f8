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
import importlib.machinery
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
    "coverage": (["-fprofile-instr-generate", "-fcoverage-mapping"], ["-fprofile-instr-generate"]),
}
LIBRARY_FILE = "libmpsnorm.so"
OUTPUT = os.path.join(REPO, "build", "fake-metal")
OBJECTS = os.path.join(OUTPUT, "objects")  # shared by every variant and copy of objc/


def fake_sources():
    return sorted(glob.glob(os.path.join(HERE, "fake", "*.m")) +
                  glob.glob(os.path.join(HERE, "fake", "*.c")))


def package_dir():
    """The directory of the mpsnorm this interpreter imports (its compiled modules are reused)."""
    spec = importlib.util.find_spec("mpsnorm")
    if spec is None or not spec.origin:
        raise RuntimeError("mpsnorm is not importable: install it first (pip install -e .)")
    folder = os.path.dirname(spec.origin)
    modules = [name for name in os.listdir(folder)
               if name.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))]
    if not modules:
        raise RuntimeError("the mpsnorm imported here (%s) has no compiled modules: build it "
                           "first (pip install -e .)" % folder)
    return folder


def _headers_digest(folders):
    """Hash of the headers in these folders (names and contents)."""
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted(glob.glob(os.path.join(folder, "*.h"))):
            with open(path, "rb") as handle:
                digest.update(os.path.basename(path).encode() + b"\0" + handle.read())
    return digest.hexdigest()


def _compile_jobs(objc_dir, variant_flags, objects, objc_objects=None):
    """[(command, object)] for every source of the library with the fakes. An object's name
    is the hash of its command, source and headers, so an unchanged one is compiled once.
    The objects of a copy of objc/ go to objc_objects (beside that build, not the cache)."""
    plain_c = library_sources("kernels", "checks", "dispatch", "metal_route")
    metal = sorted(glob.glob(os.path.join(objc_dir, "*.m"))) if objc_dir else \
        library_sources("metal")
    if not metal:
        raise RuntimeError("no Objective-C sources (objc/*.m) to build")
    objc_folder = objc_dir or os.path.join(REPO, "objc")
    objc_include = ["-I" + objc_folder]
    headers = _headers_digest([os.path.join(REPO, "mpsnorm", d) for d in
                               ("include", "core", "cpu")] + [HERE, os.path.join(HERE, "fake")])
    objc_headers = headers + _headers_digest([objc_folder])
    jobs = []
    for path in plain_c + metal + fake_sources():
        if path in plain_c:
            flags = C_FLAGS
        elif path in metal:
            flags = OBJC_FLAGS + objc_include
        else:
            flags = ["-std=c99", "-O1", "-Werror"] if path.endswith(".c") else FAKE_FLAGS
        command = ["clang", "-c"] + COMMON + INCLUDES + flags + variant_flags + [path]
        digest = hashlib.sha256(("\0".join(command) +
                                 (objc_headers if path in metal else headers)).encode())
        with open(path, "rb") as handle:
            digest.update(handle.read())
        folder = objc_objects if objc_dir and objc_objects and path in metal else objects
        target = os.path.join(folder, "%s-%s.o" % (os.path.basename(path),
                                                    digest.hexdigest()[:20]))
        jobs.append((command + ["-o", target], target))
    return jobs


def _run_jobs(jobs, log):
    """Compiles what is not compiled yet, two at a time; raises RuntimeError on a failure."""
    def run(job):
        command, target = job
        scratch = target + ".partial.o"
        result = subprocess.run(command[:-1] + [scratch], capture_output=True, text=True,
                                timeout=600)
        if result.returncode == 0:
            os.replace(scratch, target)
        return command, result

    missing = [job for job in jobs if not os.path.isfile(job[1])]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(run, missing))
    for command, result in results:
        if log is not None and result.stderr:
            log.write(result.stderr)
        if result.returncode != 0:
            raise RuntimeError("%s\n%s" % (" ".join(command), result.stderr[-6000:]))


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


def _runtime_prefix(runtime_prefix):
    if runtime_prefix is not None:
        return runtime_prefix
    found, why = runtime.find_runtime()
    if found is None:
        raise RuntimeError(why)
    return found


def build(variant="plain", objc_dir=None, build_base=None, runtime_prefix=None, log=None):
    """Builds (or reuses) the fake-Metal package; returns the directory for PYTHONPATH.
    Raises RuntimeError with the compiler's output on failure."""
    if variant not in VARIANTS:
        raise ValueError("variant must be one of %s, got %r" % (sorted(VARIANTS), variant))
    runtime_prefix = _runtime_prefix(runtime_prefix)
    name = variant if objc_dir is None else "%s-%s" % (variant, os.path.basename(objc_dir))
    build_base = os.path.abspath(build_base or os.path.join(OUTPUT, name))
    compile_flags, link_flags = VARIANTS[variant]
    jobs = _compile_jobs(objc_dir, compile_flags, OBJECTS, os.path.join(build_base, "objects"))
    installed = package_dir()
    package_files = [p for p in glob.glob(os.path.join(installed, "*")) if os.path.isfile(p)]
    library = os.path.join(build_base, "mpsnorm", LIBRARY_FILE)
    fingerprint = _fingerprint([job[1] for job in jobs] + link_flags + [runtime_prefix],
                               package_files + [os.path.join(runtime_prefix, runtime.LIBRARY)])
    stamp = os.path.join(build_base, "inputs.sha256")
    if os.path.isfile(stamp) and os.path.isfile(library):
        with open(stamp) as saved:
            if saved.read() == fingerprint:
                return build_base
    os.makedirs(OBJECTS, exist_ok=True)
    os.makedirs(os.path.join(build_base, "objects"), exist_ok=True)
    if os.path.exists(stamp):
        os.remove(stamp)
    _run_jobs(jobs, log)
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


def build_program(source, output, variant="thread", objc_dir=None, runtime_prefix=None,
                  log=None):
    """Links the library's objects for `variant` (as build() compiles them, the fakes
    included) with the C program `source` into the executable `output`: for
    ThreadSanitizer, whose runtime must be linked into the program."""
    runtime_prefix = _runtime_prefix(runtime_prefix)
    compile_flags, link_flags = VARIANTS[variant]
    compile_flags = [f for f in compile_flags if not f.startswith("-shared-lib")]
    link_flags = [f for f in link_flags if not f.startswith("-shared-lib")]
    output_folder = os.path.dirname(os.path.abspath(output))
    jobs = _compile_jobs(objc_dir, compile_flags, OBJECTS, output_folder)
    command = (["clang", "-c"] + COMMON + INCLUDES + ["-std=c99", "-O1"] + compile_flags +
               [source])
    program_object = os.path.join(output_folder, os.path.basename(output) + ".o")
    os.makedirs(OBJECTS, exist_ok=True)
    if os.path.exists(program_object):
        os.remove(program_object)
    _run_jobs(jobs + [(command + ["-o", program_object], program_object)], log)
    lib_dir = os.path.join(runtime_prefix, "lib")
    link = (["clang", "-o", output, program_object] + [job[1] for job in jobs] + link_flags +
            ["-L" + lib_dir, "-lobjc", "-lm", "-lpthread", "-Wl,-rpath," + lib_dir])
    result = subprocess.run(link, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError("%s\n%s" % (" ".join(link), result.stderr[-6000:]))
    return output


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
