"""Where the C header and library of this installation are, and the compiler
flags that use them (``python -m mpsnorm config --cflags --libs``)."""
import os
import sys
from typing import Callable, Dict, List

from mpsnorm import get_include, get_library_dir

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
LIBRARY_FILE = "libmpsnorm.dylib" if sys.platform == "darwin" else "libmpsnorm.so"


def get_pkgconfig_dir() -> str:
    """The directory holding mpsnorm.pc, for PKG_CONFIG_PATH."""
    return PACKAGE_DIR


def cflags() -> str:
    return f"-I{get_include()}"


def libs() -> str:
    directory = get_library_dir()
    # The rpath lets the program find the library where the package lives.
    return f"-L{directory} -lmpsnorm -Wl,-rpath,{directory}"


OPTIONS: Dict[str, Callable[[], str]] = {
    "--cflags": cflags,
    "--libs": libs,
    "--includedir": get_include,
    "--libdir": get_library_dir,
    "--pkgconfigdir": get_pkgconfig_dir,
}


def main(arguments: List[str]) -> int:
    """Prints the requested values on one line; exit status 2 on a bad option."""
    unknown = [argument for argument in arguments if argument not in OPTIONS]
    if unknown or not arguments:
        print(f"usage: python -m mpsnorm config {' '.join('[' + o + ']' for o in OPTIONS)}",
              file=sys.stderr)
        return 2
    print(" ".join(OPTIONS[argument]() for argument in arguments))
    return 0
