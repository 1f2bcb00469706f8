"""The library's source files, by the groups of mpsnorm/sources.txt (the one list that the
package build, the C tests, the sanitizer and fake-Metal builds and the fuzzers compile)."""
import glob
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def library_sources(*groups):
    """Absolute paths of the files of the named groups, in the list's order."""
    with open(os.path.join(REPO, "mpsnorm", "sources.txt")) as listing:
        entries = dict(line.split(":", 1) for line in listing if line.strip() and line[0] != "#")
    patterns = [pattern for group in groups for pattern in entries[group].split()]
    return [path for pattern in patterns
            for path in sorted(glob.glob(os.path.join(REPO, pattern)))]
