"""Build of mpsnorm: the C library (libmpsnorm, the kernels and both backends'
glue) and the Cython extension module that links it.

The library is built like an extension module so that regular, editable and
in-place builds all place it beside the modules, which find it through an
rpath of their own directory. On macOS the Metal backend (objc/*.m) is
compiled into it; elsewhere mpsnorm/core/metal_unavailable.c stands in.
"""
import glob
import os
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
MACOS = sys.platform == "darwin"
LIBRARY = "mpsnorm.libmpsnorm"
LIBRARY_FILE = "libmpsnorm.dylib" if MACOS else "libmpsnorm.so"
INCLUDE_DIRS = ["mpsnorm/include", "mpsnorm/core", "mpsnorm/cpu"]
# MPSCNNLocalContrastNormalizationGradient and the instance-norm kernels need 10.13.4.
MACOS_DEPLOYMENT_TARGET = "10.13.4"


def relative_sources(*patterns):
    found = []
    for pattern in patterns:
        found.extend(sorted(glob.glob(os.path.join(HERE, pattern))))
    return [os.path.relpath(path, HERE) for path in found]


def library_sources(*groups):
    """The files of the named groups of mpsnorm/sources.txt (the one list of the library's
    sources), relative to this directory."""
    with open(os.path.join(HERE, "mpsnorm", "sources.txt")) as listing:
        lines = [line.split(":", 1) for line in listing if line.strip() and line[0] != "#"]
    entries = {name.strip(): paths.split() for name, paths in lines}
    return relative_sources(*[pattern for group in groups for pattern in entries[group]])


def library_extension():
    common = ("kernels", "checks", "dispatch", "metal_route")
    sources = library_sources(*common, "metal" if MACOS else "no_metal")
    compile_args = ["-O3", "-fvisibility=hidden", "-Wall", "-Wextra"]
    link_args = []
    if MACOS:
        # -fobjc-arc-exceptions: ARC releases the objects of the frames an Objective-C
        # exception unwinds, which objc/ catches (mpsnorm_objc_guard) and returns as a status.
        compile_args += ["-fobjc-arc", "-fobjc-arc-exceptions"]
        link_args += ["-Wl,-install_name,@rpath/" + LIBRARY_FILE]
        for framework in ("Foundation", "Metal", "MetalPerformanceShaders", "CoreGraphics"):
            link_args += ["-framework", framework]
    else:
        compile_args += ["-std=c99"]
        link_args += ["-Wl,-soname," + LIBRARY_FILE, "-Wl,--no-undefined"]
    return Extension(
        LIBRARY,
        sources=sources,
        include_dirs=INCLUDE_DIRS,
        define_macros=[("MPSNORM_BUILDING", "1")],
        libraries=[] if MACOS else ["m", "pthread"],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )


def module_extensions():
    """The extension module mpsnorm._mpsnorm (one .pyx including a .pxi per concept)."""
    rpath = "@loader_path" if MACOS else "$ORIGIN"
    module = Extension(
        "mpsnorm._mpsnorm",
        sources=["mpsnorm/_mpsnorm.pyx"],
        include_dirs=["mpsnorm/include"],
        libraries=["mpsnorm"],
        extra_compile_args=["-O2"],
        extra_link_args=["-Wl,-rpath," + rpath],
    )
    return cythonize([module], compiler_directives={"language_level": 3, "embedsignature": True})


class BuildWithLibrary(build_ext):
    """build_ext that builds libmpsnorm first, as a plain shared library, and
    links the extension module against it."""

    def get_ext_filename(self, fullname):
        # Asked with the full dotted name, and (by get_ext_fullpath) the last part.
        if fullname == LIBRARY:
            return os.path.join("mpsnorm", LIBRARY_FILE)
        if fullname == LIBRARY.rpartition(".")[2]:
            return LIBRARY_FILE
        return super().get_ext_filename(fullname)

    def get_export_symbols(self, ext):
        if ext.name == LIBRARY:
            return []  # a library, not a module: no PyInit_ symbol
        return super().get_export_symbols(ext)

    def build_extensions(self):
        if ".m" not in self.compiler.src_extensions:
            self.compiler.src_extensions.append(".m")
        self.extensions.sort(key=lambda ext: ext.name != LIBRARY)
        library_dir = os.path.dirname(self.get_ext_fullpath(LIBRARY))
        for ext in self.extensions:
            if ext.name != LIBRARY:
                ext.library_dirs = [library_dir]
        super().build_extensions()

    def build_extension(self, ext):
        if ext.name != LIBRARY or not MACOS:
            return super().build_extension(ext)
        # Python's link line makes a loadable bundle; a library others link needs -dynamiclib.
        saved = self.compiler.linker_so
        self.compiler.linker_so = ["-dynamiclib" if arg == "-bundle" else arg for arg in saved]
        try:
            return super().build_extension(ext)
        finally:
            self.compiler.linker_so = saved


if MACOS:
    os.environ.setdefault("MACOSX_DEPLOYMENT_TARGET", MACOS_DEPLOYMENT_TARGET)

setup(
    ext_modules=[library_extension()] + module_extensions(),
    cmdclass={"build_ext": BuildWithLibrary},
)
