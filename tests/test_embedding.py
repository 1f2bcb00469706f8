"""mpsnorm without Python in the way: the C library, its header and flags,
the C example and C API test built with only `python -m mpsnorm config`
flags, pkg-config, and a Cython module that cimports mpsnorm."""
import os
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import mpsnorm
import reference
from mpsnorm import config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPILER = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
needs_compiler = pytest.mark.skipif(COMPILER is None, reason="no C compiler on PATH")


def config_flags(*options):
    result = subprocess.run([sys.executable, "-m", "mpsnorm", "config", *options],
                            capture_output=True, text=True, check=True)
    return result.stdout.split()


def compile_and_run(source, tmp_path, name):
    executable = str(tmp_path / name)
    command = [COMPILER, "-std=c99", "-Wall", "-Wextra", "-Werror", source,
               *config_flags("--cflags", "--libs"), "-lm", "-pthread", "-o", executable]
    subprocess.run(command, check=True, capture_output=True, text=True)
    # A clean environment: the program must find libmpsnorm through its rpath.
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return subprocess.run([executable], capture_output=True, text=True, env=environment,
                          timeout=120)


def test_header_is_found_with_get_include():
    assert os.path.isfile(os.path.join(mpsnorm.get_include(), "mpsnorm.h"))
    assert os.path.isfile(os.path.join(mpsnorm.get_library_dir(), config.LIBRARY_FILE))


def test_versions_agree():
    with open(os.path.join(mpsnorm.get_include(), "mpsnorm.h")) as header:
        header_version = re.search(r'#define MPSNORM_VERSION_STRING "([^"]+)"', header.read())[1]
    with open(os.path.join(config.get_pkgconfig_dir(), "mpsnorm.pc")) as pc:
        pc_version = re.search(r"^Version: (\S+)$", pc.read(), re.MULTILINE)[1]
    assert header_version == pc_version == mpsnorm.__version__
    assert mpsnorm._mpsnorm.library_version() == mpsnorm.__version__


def test_config_rejects_unknown_options():
    result = subprocess.run([sys.executable, "-m", "mpsnorm", "config", "--bogus"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "usage" in result.stderr


@pytest.mark.skipif(shutil.which("readelf") is None or sys.platform != "linux",
                    reason="readelf on Linux only")
def test_library_does_not_need_libpython():
    library = os.path.join(mpsnorm.get_library_dir(), config.LIBRARY_FILE)
    dynamic = subprocess.run(["readelf", "-d", library], capture_output=True, text=True,
                             check=True).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic)
    assert needed, dynamic
    assert not [name for name in needed if "python" in name.lower()], needed


@needs_compiler
def test_c_example_builds_with_config_flags_and_runs(tmp_path):
    result = compile_and_run(os.path.join(REPO, "examples", "gradients.c"), tmp_path, "gradients")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"mpsnorm {mpsnorm.__version__}, backend ")
    # Recompute the example's inputs and its instance-norm results independently.
    index = np.arange(2 * 3 * 16 * 16)
    x = (((index * 37) % 101) / 101.0).astype(np.float32).astype(np.float64).reshape(2, 3, 16, 16)
    dy = ((((index * 53) % 89) / 89.0).astype(np.float32) - np.float32(0.5)).astype(
        np.float64).reshape(2, 3, 16, 16)
    mean = x.mean(axis=(2, 3), keepdims=True)
    xhat = (x - mean) / np.sqrt(x.var(axis=(2, 3), keepdims=True) + np.float64(np.float32(1e-5)))
    printed = re.findall(r"channel (\d): dgamma = (\S+), dbeta = (\S+)", result.stdout)
    assert len(printed) == 3
    for channel, dgamma, dbeta in printed:
        c = int(channel)
        assert float(dbeta) == pytest.approx(dy[:, c].sum(), abs=2e-6 * np.abs(dy).sum())
        assert float(dgamma) == pytest.approx((dy * xhat)[:, c].sum(),
                                              abs=2e-6 * np.abs(dy * xhat).sum())


@needs_compiler
def test_c_api_program(tmp_path):
    result = compile_and_run(os.path.join(REPO, "tests", "c", "test_c_api.c"), tmp_path,
                             "test_c_api")
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"\d+ passed, 0 failed", summary), summary


@pytest.mark.skipif(shutil.which("pkg-config") is None, reason="pkg-config is not installed")
def test_pkg_config_file_gives_the_same_flags():
    environment = dict(os.environ, PKG_CONFIG_PATH=config.get_pkgconfig_dir())
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "mpsnorm"], env=environment,
                           capture_output=True, text=True, check=True).stdout.split()
    assert f"-I{os.path.realpath(mpsnorm.get_include())}" in [
        "-I" + os.path.realpath(flag[2:]) if flag.startswith("-I") else flag for flag in flags]
    assert "-lmpsnorm" in flags


CYTHON_MODULE = textwrap.dedent('''
    # cython: language_level=3
    from libc.stdint cimport int64_t
    cimport mpsnorm
    from mpsnorm.libmpsnorm cimport (mpsnorm_lcn_gradient, mpsnorm_lcn_params,
                                     mpsnorm_lcn_params_init, mpsnorm_tensor, MPSNORM_FLOAT64)
    from mpsnorm._mpsnorm cimport LocalContrastNormalizationGradient

    def gradient(double[:, :, :, ::1] dy, double[:, :, :, ::1] x, double[:, :, :, ::1] dx,
                 int kernel):
        cdef mpsnorm_lcn_params params
        cdef mpsnorm_tensor tensors[3]
        cdef int status, i, axis
        mpsnorm_lcn_params_init(&params, kernel, kernel)
        params.alpha = 1.0
        for i, view in enumerate((dy, x, dx)):
            tensors[i].dtype = MPSNORM_FLOAT64
            for axis in range(4):
                tensors[i].shape[axis] = x.shape[axis]
        tensors[0].data = &dy[0, 0, 0, 0]
        tensors[1].data = &x[0, 0, 0, 0]
        tensors[2].data = &dx[0, 0, 0, 0]
        for i in range(3):
            tensors[i].strides[3] = 1
            tensors[i].strides[2] = x.shape[3]
            tensors[i].strides[1] = x.shape[2] * x.shape[3]
            tensors[i].strides[0] = x.shape[1] * x.shape[2] * x.shape[3]
        with nogil:
            status = mpsnorm_lcn_gradient(NULL, &params, &tensors[0], &tensors[1], &tensors[2],
                                          NULL)
        return status

    def kernel_width_of(LocalContrastNormalizationGradient kernel):
        # Reads the extension type's C field directly.
        return kernel.params.kernel_width
''')

CYTHON_SETUP = textwrap.dedent('''
    import os
    import mpsnorm
    from Cython.Build import cythonize
    from setuptools import Extension, setup

    package_parent = os.path.dirname(os.path.dirname(mpsnorm.__file__))
    setup(
        name="uses_mpsnorm",
        ext_modules=cythonize(
            [Extension("uses_mpsnorm", ["uses_mpsnorm.pyx"],
                       include_dirs=[mpsnorm.get_include()],
                       library_dirs=[mpsnorm.get_library_dir()], libraries=["mpsnorm"],
                       runtime_library_dirs=[mpsnorm.get_library_dir()])],
            include_path=[package_parent]),
    )
''')


@needs_compiler
def test_cython_module_cimports_the_installed_package(tmp_path):
    (tmp_path / "uses_mpsnorm.pyx").write_text(CYTHON_MODULE)
    (tmp_path / "setup.py").write_text(CYTHON_SETUP)
    build = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=tmp_path,
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    script = textwrap.dedent('''
        import numpy as np, mpsnorm, uses_mpsnorm
        rng = np.random.default_rng(3)
        x, dy = rng.standard_normal((2, 3, 6, 7)), rng.standard_normal((2, 3, 6, 7))
        dx = np.zeros_like(x)
        assert uses_mpsnorm.gradient(dy, x, dx, 3) == 0
        np.savez("result.npz", x=x, dy=dy, dx=dx)
        assert uses_mpsnorm.kernel_width_of(mpsnorm.LocalContrastNormalizationGradient(5, 3)) == 5
        print("ok")
    ''')
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                         text=True)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stdout + run.stderr
    saved = np.load(tmp_path / "result.npz")
    expected = reference.lcn_gradient(saved["dy"], saved["x"], 3, alpha=1.0)
    reference.assert_close(saved["dx"], expected, np.float64, scale_from=(saved["dy"],))
