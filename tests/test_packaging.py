"""Packaging: pyproject.toml (build system, metadata, extras, cibuildwheel), the
source distribution's contents, and the Linux wheel: built, installed in a fresh
virtual environment, the test suite run against it from outside the source tree.

The sdist test needs `build` (in the test extra; skipped without it, a failure under
CI=true). The wheel test takes minutes: it is `heavy` (MPSNORM_TEST_FULL=1), and runs from a
source tree only (cibuildwheel runs the suite on its own wheels). Both run `build` from a
scratch directory: from the checkout, the `build/` folder a setuptools build leaves there
would stand in for the package."""
import glob
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

import pytest

import mpsnorm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYPROJECT = os.path.join(REPO, "pyproject.toml")
IN_SOURCE_TREE = (os.path.realpath(os.path.dirname(os.path.dirname(mpsnorm.__file__)))
                  == os.path.realpath(REPO))
CI = os.environ.get("CI") == "true"

needs_pyproject = pytest.mark.skipif(not os.path.isfile(PYPROJECT),
                                     reason="pyproject.toml is not beside the tests")


def load_pyproject():
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        tomllib = pytest.importorskip("tomli", reason="reading TOML needs tomli on Python < 3.11")
    with open(PYPROJECT, "rb") as file:
        return tomllib.load(file)


def build_is_installed():
    """Whether `python -m build` works, asked from outside the checkout."""
    found = subprocess.run([sys.executable, "-c", "import build.__main__"],
                           cwd=tempfile.gettempdir(), capture_output=True)
    return found.returncode == 0


def require_build():
    if not build_is_installed():
        if CI:
            pytest.fail("the `build` package is not installed (CI=true requires it)")
        pytest.skip("the `build` package is not installed (pip install build)")


def copy_source_tree(destination):
    """The working tree as it is (build products included, which MANIFEST.in must drop)."""
    shutil.copytree(REPO, destination, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", ".pytest_cache", ".mypy_cache", "__pycache__",
        ".benchmarks", ".venv*"))
    return destination


def run_build(source, outdir, *flags):
    # --no-isolation: the build requirements (setuptools, Cython) are the test extras.
    result = subprocess.run([sys.executable, "-m", "build", *flags, "--no-isolation",
                             "--outdir", str(outdir), str(source)],
                            cwd=os.path.dirname(str(outdir)), capture_output=True, text=True,
                            timeout=1200)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result


@needs_pyproject
def test_pyproject_build_system_metadata_and_extras():
    project = load_pyproject()
    requires = project["build-system"]["requires"]
    assert any(r.replace(" ", "").startswith("setuptools>=") for r in requires), requires
    assert "Cython>=3.0" in requires, requires
    assert project["build-system"]["build-backend"] == "setuptools.build_meta"
    meta = project["project"]
    assert meta["name"] == "mpsnorm" and meta["requires-python"] == ">=3.9"
    assert meta["license"] == "MIT" and meta["readme"] == "README.md"
    assert meta["dependencies"] == ["numpy"]  # torch and MLX stay optional
    extras = meta["optional-dependencies"]
    assert {"test", "bench", "torch", "mlx"} <= set(extras)
    assert any(r.startswith("torch") for r in extras["torch"])
    assert any(r.startswith("mlx") for r in extras["mlx"])
    assert "pytest" in extras["test"] and "pytest-benchmark" in extras["bench"]
    # the packaging tests build without isolation, with the test extra's tools: at least
    # the versions the build system asks for (setuptools 77 reads the license string)
    for tool in ("setuptools", "cython"):
        needed = [r.lower() for r in requires if r.lower().startswith(tool + ">=")]
        installed = [r.lower() for r in extras["test"] if r.lower().startswith(tool + ">=")]
        assert needed and installed, (tool, requires, extras["test"])
        assert (tuple(int(p) for p in installed[0].split(">=")[1].split(".")) >=
                tuple(int(p) for p in needed[0].split(">=")[1].split("."))), (needed, installed)
    data = project["tool"]["setuptools"]["package-data"]["mpsnorm"]
    for pattern in ("include/*.h", "*.pxd", "*.pyi", "py.typed", "mpsnorm.pc"):
        assert pattern in data, pattern


@needs_pyproject
def test_cibuildwheel_configuration():
    config = load_pyproject()["tool"]["cibuildwheel"]
    assert config["build"] == ["cp39-*", "cp310-*", "cp311-*", "cp312-*", "cp313-*"]
    assert sorted(config["linux"]["archs"]) == ["aarch64", "x86_64"]
    assert sorted(config["macos"]["archs"]) == ["arm64", "x86_64"]
    assert config["macos"]["environment"]["MACOSX_DEPLOYMENT_TARGET"] == "10.13"
    arm = [o for o in config["overrides"] if o["select"] == "*-macosx_arm64"]
    assert arm and arm[0]["environment"]["MACOSX_DEPLOYMENT_TARGET"] == "11.0"
    assert "pytest {project}/tests" in config["test-command"]
    assert config["test-extras"] == ["test"]


@needs_pyproject
@pytest.mark.skipif(shutil.which("cibuildwheel") is None, reason="cibuildwheel is not installed")
@pytest.mark.parametrize("platform,expected", [
    ("linux", {f"{py}-manylinux_{arch}" for py in ("cp39", "cp310", "cp311", "cp312", "cp313")
               for arch in ("x86_64", "aarch64")}),
    ("macos", {f"{py}-macosx_{arch}" for py in ("cp39", "cp310", "cp311", "cp312", "cp313")
               for arch in ("x86_64", "arm64")}),
])
def test_cibuildwheel_reads_the_configuration(platform, expected):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CIBW_")}
    result = subprocess.run(["cibuildwheel", "--print-build-identifiers", "--platform", platform],
                            cwd=REPO, env=environment, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == expected


SDIST_MUST_HAVE = [
    "README.md", "pyproject.toml", "setup.py", "MANIFEST.in", "PKG-INFO",
    "mpsnorm/include/mpsnorm.h", "mpsnorm/mpsnorm.pc", "mpsnorm/py.typed",
    "mpsnorm/__init__.pxd", "mpsnorm/libmpsnorm.pxd", "mpsnorm/_mpsnorm.pxd", "mpsnorm/_dlpack.pxd",
    "mpsnorm/_mpsnorm.pyx", "mpsnorm/_tensor.pxi", "mpsnorm/_kernel.pxi", "mpsnorm/_lcn.pxi",
    "mpsnorm/_mpsnorm.pyi", "mpsnorm/torch.py", "mpsnorm/mlx.py", "mpsnorm/_adapters.py",
    "mpsnorm/demo.py",
    "tests/conftest.py", "tests/reference.py", "tests/c/Makefile", "tests/c/test_c_api.c",
    "tests/objc/mps_declarations.h", "tests/stubtest_allowlist.txt", "tests/typing_sample.py",
    "examples/gradients.c", "examples/train_tiny.py", "examples/train_tiny_mlx.py",
    "docs/lcn.png",
]


def tracked(pattern):
    return sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, pattern)))


@needs_pyproject
def test_sdist_holds_sources_headers_pxd_objc_tests_and_examples(tmp_path):
    require_build()
    source = copy_source_tree(tmp_path / "src")
    run_build(source, tmp_path / "dist", "--sdist")
    (archive,) = glob.glob(str(tmp_path / "dist" / "mpsnorm-*.tar.gz"))
    with tarfile.open(archive) as tar:
        root = os.path.basename(archive)[:-len(".tar.gz")]
        names = {name[len(root) + 1:] for name in tar.getnames() if name.startswith(root + "/")}
    missing = [name for name in SDIST_MUST_HAVE if name not in names]
    for pattern in ("objc/*.m", "mpsnorm/core/*.c", "mpsnorm/core/*.h", "mpsnorm/cpu/*.c",
                    "mpsnorm/cpu/*.h", "mpsnorm/*.pxd", "mpsnorm/*.pyx", "mpsnorm/*.pxi", "tests/c/*.c",
                    "tests/test_*.py"):
        expected = tracked(pattern)
        assert expected, pattern
        missing += [name for name in expected if name not in names]
    for pattern in ("bench/*.py", "bench/*.c", "fuzz/*.py", "fuzz/*.c", "tests/*/*.py",  # present
                    "tests/objc/*.c", "tests/objc/*.md", "tests/objc/fake/*"):
        missing += [name for name in tracked(pattern) if name not in names]
    assert not missing, missing
    # Build products and Cython's output stay out.
    unwanted = [name for name in names if name.endswith((".so", ".dylib", ".o", ".pyc"))
                or (name.startswith("mpsnorm/_") and name.endswith(".c"))
                or name.startswith(("build/", ".git/"))]
    assert not unwanted, unwanted


def site_directories():
    """The directories this interpreter imports installed packages from (a virtual
    environment's own, and its base's where it sees them)."""
    return [path for path in sys.path if os.path.basename(path) in ("site-packages",
                                                                    "dist-packages")]


@pytest.mark.heavy
@pytest.mark.skipif(not IN_SOURCE_TREE,
                    reason="mpsnorm is imported from an installed package, not this source tree")
def test_wheel_installs_and_passes_the_tests_outside_the_source_tree(tmp_path):
    require_build()
    source = copy_source_tree(tmp_path / "src")
    run_build(source, tmp_path / "dist", "--wheel")
    (wheel,) = glob.glob(str(tmp_path / "dist" / "mpsnorm-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for name in ("mpsnorm/py.typed", "mpsnorm/_mpsnorm.pyi", "mpsnorm/_mpsnorm.pxd",
                 "mpsnorm/include/mpsnorm.h", "mpsnorm/mpsnorm.pc", "mpsnorm/torch.py",
                 "mpsnorm/mlx.py", "mpsnorm/_adapters.py", "mpsnorm/demo.py",
                 "mpsnorm/libmpsnorm.so"):
        assert name in names, name
    assert not [n for n in names if n.startswith("tests/") or n.endswith((".pyx", ".c"))]
    # A fresh environment that holds its own mpsnorm, the wheel, and sees the packages this
    # interpreter sees (NumPy, pytest, torch, mypy) through a .pth file listing its site
    # directories: `venv --system-site-packages` would show the base interpreter's instead
    # when this one runs in a virtual environment. Paths a .pth lists come after the venv's
    # own site-packages, and their own .pth files (an editable mpsnorm) are not run.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    own_site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                               "['purelib'])"], capture_output=True, text=True,
                              check=True).stdout.strip()
    with open(os.path.join(own_site, "mpsnorm-test-parent.pth"), "w") as pth:
        pth.write("\n".join(site_directories()) + "\n")
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MYPYPATH")}
    # the default run: the heavy groups build from the source tree, not from the wheel
    environment["MPSNORM_TEST_FULL"] = "0"
    install = subprocess.run([sys.executable, "-m", "pip", "--python", python, "install",
                              "--no-index", "--no-deps", wheel],
                             env=environment, capture_output=True, text=True)
    assert install.returncode == 0, install.stdout + install.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([python, "-c", "import mpsnorm; print(mpsnorm.__file__)"],
                           cwd=elsewhere, env=environment, capture_output=True, text=True,
                           check=True).stdout
    assert where.startswith(str(venv)), where
    tests = os.path.join(REPO, "tests")
    run = subprocess.run([python, "-m", "pytest", tests, "-q", "-p", "no:cacheprovider",
                          "--ignore", os.path.join(tests, "test_packaging.py")],
                         cwd=elsewhere, env=environment, capture_output=True, text=True,
                         timeout=3600)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    print(run.stdout.strip().splitlines()[-1])
