"""The Objective-C runtime the fake-Metal build runs on: GNUstep's libobjc2, a test
dependency like clang (never part of this repository).

    python tests/objc/runtime.py [--prefix DIR] [--tarball FILE]

builds libobjc2 from its source tarball with cmake and clang into a prefix outside the
tracked tree (default build/objc-runtime, which git ignores), or reuses one built from the
same tarball, and prints the prefix; the tests find it there, through
MPSNORM_OBJC_RUNTIME=<prefix>, or through pkg-config (libobjc >= 2). The tarball is
$MPSNORM_LIBOBJC2_TARBALL, else ../shared/vendor/libobjc2.tar.gz beside the checkout, else
/work/shared/vendor/libobjc2.tar.gz. Building needs cmake, clang and Debian's robin-map-dev.
"""
import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_PREFIX = os.path.join(REPO, "build", "objc-runtime")
TARBALL_NAME = "libobjc2.tar.gz"
LIBRARY = os.path.join("lib", "libobjc.so")
STAMP = "tarball.sha256"


def tarball_candidates():
    """Where the source tarball is looked for, in order."""
    listed = [os.environ.get("MPSNORM_LIBOBJC2_TARBALL"),
              os.path.join(os.path.dirname(REPO), "shared", "vendor", TARBALL_NAME),
              os.path.join("/work", "shared", "vendor", TARBALL_NAME)]
    return [path for path in listed if path]


def find_tarball():
    """The first candidate that exists, or None."""
    return next((path for path in tarball_candidates() if os.path.isfile(path)), None)


def _digest(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def is_runtime(prefix):
    """Whether prefix holds libobjc2: its library and its ARC header."""
    return bool(prefix) and os.path.isfile(os.path.join(prefix, LIBRARY)) and \
        os.path.isfile(os.path.join(prefix, "include", "objc", "objc-arc.h"))


def _pkg_config_prefix():
    """The prefix of a libobjc >= 2 that pkg-config knows (GCC's libobjc has no ARC), or None."""
    if shutil.which("pkg-config") is None:
        return None
    version = subprocess.run(["pkg-config", "--modversion", "libobjc"], capture_output=True,
                             text=True)
    if version.returncode != 0 or not version.stdout.strip()[:1].isdigit() or \
            int(version.stdout.split(".")[0]) < 2:
        return None
    prefix = subprocess.run(["pkg-config", "--variable=prefix", "libobjc"], capture_output=True,
                            text=True).stdout.strip()
    return prefix if is_runtime(prefix) else None


def find_runtime():
    """(prefix, None) of the runtime the tests use, or (None, why there is none).
    MPSNORM_OBJC_RUNTIME, when set, must name a libobjc2 prefix."""
    named = os.environ.get("MPSNORM_OBJC_RUNTIME")
    if named:
        if is_runtime(named):
            return named, None
        return None, ("MPSNORM_OBJC_RUNTIME=%s holds no libobjc2 (%s and include/objc/objc-arc.h)"
                      % (named, LIBRARY))
    if is_runtime(DEFAULT_PREFIX):
        return DEFAULT_PREFIX, None
    found = _pkg_config_prefix()
    if found:
        return found, None
    return None, ("no Objective-C runtime (GNUstep libobjc2): build one with `python "
                  "tests/objc/runtime.py` or set MPSNORM_OBJC_RUNTIME=<prefix>")


def build(prefix=DEFAULT_PREFIX, tarball=None, log=None):
    """Builds libobjc2 into prefix (or keeps the one built there from the same tarball);
    returns the prefix. Raises RuntimeError saying what is missing or what failed."""
    tarball = tarball or find_tarball()
    if tarball is None:
        raise RuntimeError("the libobjc2 source tarball is not at any of: " +
                           ", ".join(tarball_candidates()))
    for tool in ("cmake", "clang", "clang++"):
        if shutil.which(tool) is None:
            raise RuntimeError("%s is needed to build libobjc2" % tool)
    prefix = os.path.abspath(prefix)
    digest = _digest(tarball)
    stamp = os.path.join(prefix, STAMP)
    if is_runtime(prefix) and os.path.isfile(stamp):
        with open(stamp) as saved:
            if saved.read().strip() == digest:
                return prefix
    with tempfile.TemporaryDirectory(prefix="libobjc2-build-") as scratch:
        with tarfile.open(tarball) as archive:
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            archive.extractall(scratch, **safe)
        source = os.path.join(scratch, "libobjc2")
        if not os.path.isfile(os.path.join(source, "CMakeLists.txt")):
            raise RuntimeError("%s does not unpack to libobjc2/CMakeLists.txt" % tarball)
        binary = os.path.join(source, "build")
        steps = [
            ["cmake", "-S", source, "-B", binary, "-DTESTS=OFF", "-DCMAKE_BUILD_TYPE=Release",
             "-DCMAKE_C_COMPILER=clang", "-DCMAKE_CXX_COMPILER=clang++",
             "-DCMAKE_INSTALL_PREFIX=" + prefix],
            ["cmake", "--build", binary, "-j2"],
            ["cmake", "--install", binary],
        ]
        for step in steps:
            result = subprocess.run(step, capture_output=True, text=True)
            if log is not None:
                log.write(result.stdout[-2000:] + result.stderr[-2000:])
            if result.returncode != 0:
                hint = ""
                if "robin" in (result.stdout + result.stderr).lower():
                    hint = "\n(libobjc2 needs robin-map: apt-get install robin-map-dev)"
                raise RuntimeError("%s failed:\n%s%s" % (" ".join(step[:2]),
                                                         (result.stdout + result.stderr)[-4000:],
                                                         hint))
    if not is_runtime(prefix):
        raise RuntimeError("the libobjc2 install left no %s in %s" % (LIBRARY, prefix))
    with open(stamp, "w") as saved:
        saved.write(digest + "\n")
    return prefix


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefix", default=DEFAULT_PREFIX)
    parser.add_argument("--tarball")
    options = parser.parse_args()
    try:
        print(build(options.prefix, options.tarball, log=None))
    except RuntimeError as error:
        sys.exit("tests/objc/runtime.py: %s" % error)


if __name__ == "__main__":
    main()
