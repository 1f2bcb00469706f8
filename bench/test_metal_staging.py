"""Staging of the Metal backend: a tensor packed into MPS's texel layout (and unpacked back)
on the CPU backend's threads, beside memcpy of the same bytes, in one group per shape, dtype
and layout. Every Metal call stages each tensor once each way (README, Metal backend); this
times that part on any machine. extra_info["fraction_of_memcpy"] is memcpy's best time over
staging's best time, measured side by side in the run.

The library is compiled from mpsnorm/core/metal_staging.c and what it uses (the groups of
mpsnorm/sources.txt) with the system C compiler, once per run.
"""
import ctypes
import hashlib
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SHAPES = [(8, 16, 64, 64), (32, 32, 128, 128)]
DTYPES = {"float32": (np.float32, 0), "float16": (np.float16, 1)}  # mpsnorm_dtype codes
LAYOUTS = ("NCHW", "NHWC")
OPERATIONS = ("memcpy", "pack", "unpack")
_best = {}


def library_sources(*groups):
    with open(os.path.join(REPO, "mpsnorm", "sources.txt")) as listing:
        entries = dict(line.split(":", 1) for line in listing if line.strip() and line[0] != "#")
    import glob
    return [path for group in groups for pattern in entries[group].split()
            for path in sorted(glob.glob(os.path.join(REPO, pattern)))]


@pytest.fixture(scope="module")
def staging(tmp_path_factory):
    compiler = next((name for name in (os.environ.get("CC"), "cc", "gcc", "clang")
                     if name and shutil.which(name)), None)
    if compiler is None:
        pytest.skip("no C compiler (cc, gcc or clang) on PATH")
    sources = [os.path.join(HERE, "metal_staging.c"),
               os.path.join(REPO, "mpsnorm", "core", "metal_staging.c")] + \
        library_sources("kernels", "checks")
    suffix = ".dylib" if sys.platform == "darwin" else ".so"
    digest = hashlib.sha256(b"".join(open(p, "rb").read() for p in sources)).hexdigest()[:12]
    library = str(tmp_path_factory.mktemp("staging") / ("libstaging-%s%s" % (digest, suffix)))
    command = [compiler, "-O3", "-std=c99", "-fPIC", "-shared", "-pthread",
               "-I" + os.path.join(REPO, "mpsnorm", "include"),
               "-I" + os.path.join(REPO, "mpsnorm", "core"),
               "-I" + os.path.join(REPO, "mpsnorm", "cpu")] + sources + ["-lm", "-o", library]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, " ".join(command) + "\n" + result.stderr
    lib = ctypes.CDLL(library)
    lib.staging_bench_run.restype = ctypes.c_size_t
    lib.staging_bench_run.argtypes = [ctypes.c_void_p, ctypes.c_int,
                                      ctypes.POINTER(ctypes.c_int64),
                                      ctypes.POINTER(ctypes.c_int64), ctypes.c_void_p,
                                      ctypes.c_int]
    lib.staging_bench_copy.restype = None
    lib.staging_bench_copy.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    return lib


def tensor(shape, dtype, layout):
    """An NCHW-indexed view of `shape` in `layout` memory, with its element strides."""
    n, c, h, w = shape
    rng = np.random.default_rng(0)
    if layout == "NHWC":
        array = rng.standard_normal((n, h, w, c)).astype(dtype).transpose(0, 3, 1, 2)
    else:
        array = rng.standard_normal(shape).astype(dtype)
    return array, tuple(s // array.itemsize for s in array.strides)


def operation(lib, name, shape, dtype_name, layout):
    dtype, code = DTYPES[dtype_name]
    array, strides = tensor(shape, dtype, layout)
    c_shape = (ctypes.c_int64 * 4)(*shape)
    c_strides = (ctypes.c_int64 * 4)(*strides)
    staged = np.empty(array.nbytes, np.uint8)  # 16 or 32 channels: no padding texels
    source = array.__array_interface__["data"][0]
    buffer = staged.ctypes.data
    keep = (array, staged)  # the closures below hold raw addresses of these

    if name == "memcpy":
        copy = np.empty_like(staged)

        def run():
            lib.staging_bench_copy(copy.ctypes.data, buffer, array.nbytes)
    else:
        pack = 1 if name == "pack" else 0
        assert lib.staging_bench_run(source, code, c_shape, c_strides, buffer, 1) == array.nbytes

        def run():
            lib.staging_bench_run(source, code, c_shape, c_strides, buffer, pack)
    run.keep = keep
    return array.nbytes, run


def case_id(case):
    return "-".join(str(v).replace(" ", "") for v in case)


CASES = [(shape, dtype, layout) for shape in SHAPES for dtype in DTYPES for layout in LAYOUTS]


@pytest.mark.parametrize("name", OPERATIONS)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_metal_staging(benchmark, staging, case, name):
    shape, dtype, layout = case
    nbytes, run = operation(staging, name, shape, dtype, layout)
    benchmark.group = "metal staging %s %s %s" % (shape, dtype, layout)
    benchmark.extra_info["operation"] = name
    benchmark.extra_info["bytes"] = nbytes
    benchmark.pedantic(run, rounds=20, warmup_rounds=2, iterations=1)
    stats = getattr(benchmark, "stats", None)
    if stats is None or getattr(stats, "stats", None) is None:
        return  # --benchmark-disable: ran once, nothing timed
    _best[(case, name)] = stats.stats.min
    copy = _best.get((case, "memcpy"))
    if name != "memcpy" and copy is not None:
        benchmark.extra_info["fraction_of_memcpy"] = round(copy / stats.stats.min, 3)


def test_staging_round_trip(staging):
    """What the bench times is the real staging: pack then unpack restores every bit, and
    the packed texels hold channel 4s + k of pixel (j, i) at slice s, texel (j, i), k."""
    for dtype in DTYPES:
        for layout in LAYOUTS:
            shape = (2, 6, 5, 3)
            array, strides = tensor(shape, DTYPES[dtype][0], layout)
            c_shape = (ctypes.c_int64 * 4)(*shape)
            c_strides = (ctypes.c_int64 * 4)(*strides)
            packed = np.empty((2, 2, 5, 3, 4), array.dtype)  # N, slices, H, W, 4
            size = staging.staging_bench_run(array.__array_interface__["data"][0],
                                             DTYPES[dtype][1], c_shape, c_strides,
                                             packed.ctypes.data, 1)
            assert size == packed.nbytes
            expected = np.zeros((2, 8, 5, 3), array.dtype)
            expected[:, :6] = array
            expected = expected.reshape(2, 2, 4, 5, 3).transpose(0, 1, 3, 4, 2)
            assert packed.tobytes() == expected.tobytes(), (dtype, layout)
            back = np.zeros_like(array)
            staging.staging_bench_run(back.__array_interface__["data"][0], DTYPES[dtype][1],
                                      c_shape, c_strides, packed.ctypes.data, 0)
            assert back.tobytes() == array.tobytes(), (dtype, layout)
