"""Typed API: the .pyi stubs of the extension modules and py.typed ship with the
package; `mypy --strict` accepts a sample that uses the whole public API
(tests/typing_sample.py, and tests/typing_sample_torch.py / typing_sample_mlx.py
where PyTorch / MLX are installed); mypy's stubtest finds the stubs faithful to the compiled modules;
the samples also run.

The mypy tests skip when mypy is not installed, except under CI=true, where
that is a failure."""
import importlib.util
import os
import site
import subprocess
import sys
import sysconfig

import pytest

import mpsnorm

TESTS = os.path.dirname(os.path.abspath(__file__))
PACKAGE = os.path.dirname(os.path.abspath(mpsnorm.__file__))
STUBBED = ("_mpsnorm",)
HAVE_TORCH = importlib.util.find_spec("torch") is not None
HAVE_MLX = importlib.util.find_spec("mlx") is not None and importlib.util.find_spec(
    "mlx.core") is not None


def require_mypy():
    if importlib.util.find_spec("mypy") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("mypy is not installed (CI=true requires it): pip install mypy")
        pytest.skip("mypy is not installed (pip install mypy)")


def mypy_environment():
    """Environment in which mypy finds the mpsnorm that this Python imports: an
    installed package through site-packages, a source tree (an editable install,
    which mypy cannot follow) through MYPYPATH."""
    parent = os.path.realpath(os.path.dirname(PACKAGE))
    installed = {os.path.realpath(path) for path in site.getsitepackages()
                 + [site.getusersitepackages(), sysconfig.get_path("purelib"),
                    sysconfig.get_path("platlib")]}
    environment = dict(os.environ)
    environment.pop("MYPYPATH", None)
    if parent not in installed:
        environment["MYPYPATH"] = parent
    return environment


def run_mypy(tmp_path, *arguments, module="mypy"):
    command = [sys.executable, "-m", module, *arguments]
    # Run outside the source tree so that only MYPYPATH or site-packages name mpsnorm.
    return subprocess.run(command, cwd=tmp_path, env=mypy_environment(), capture_output=True,
                          text=True, timeout=600)


def test_stubs_and_marker_ship_with_the_package():
    assert os.path.isfile(os.path.join(PACKAGE, "py.typed"))
    for name in STUBBED:
        assert os.path.isfile(os.path.join(PACKAGE, name + ".pyi")), name


def test_mypy_strict_accepts_the_typing_sample(tmp_path):
    require_mypy()
    samples = [os.path.join(TESTS, "typing_sample.py")]
    if HAVE_TORCH:
        samples.append(os.path.join(TESTS, "typing_sample_torch.py"))
    if HAVE_MLX:
        samples.append(os.path.join(TESTS, "typing_sample_mlx.py"))
    result = run_mypy(tmp_path, "--strict", "--cache-dir", str(tmp_path / "cache"), *samples)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("Success: no issues found"), result.stdout


def test_mypy_strict_rejects_misuse(tmp_path):
    """The stubs constrain callers: wrong argument and result types are errors."""
    require_mypy()
    misuse = tmp_path / "misuse.py"
    misuse.write_text(
        "import mpsnorm\n"
        "lcn = mpsnorm.LocalContrastNormalization('5')\n"                      # not an int
        "y: str = lcn(b'')\n"                                                   # an array
        "g = mpsnorm.InstanceNormalizationGradient(3)\n"
        "dx, dgamma = g(b'', b'')\n"                                            # three results
        "mpsnorm.set_num_threads(2.5)\n"                                        # not an int
        "lcn.alpha = 'big'\n")                                                  # not a number
    result = run_mypy(tmp_path, "--strict", "--cache-dir", str(tmp_path / "cache"), str(misuse))
    assert result.returncode == 1, result.stdout + result.stderr
    for line in (2, 3, 5, 6, 7):
        assert f"misuse.py:{line}: error" in result.stdout, (line, result.stdout)


def test_stubtest_finds_the_stubs_faithful(tmp_path):
    require_mypy()
    result = run_mypy(tmp_path, "--allowlist", os.path.join(TESTS, "stubtest_allowlist.txt"),
                      *[f"mpsnorm.{name}" for name in STUBBED], module="mypy.stubtest")
    assert result.returncode == 0, result.stdout + result.stderr


def test_typing_sample_runs():
    pytest.importorskip("typing_extensions", reason="typing_extensions is not installed")
    import typing_sample

    typing_sample.main()


@pytest.mark.skipif(not HAVE_TORCH, reason="PyTorch is not installed")
def test_torch_typing_sample_runs():
    pytest.importorskip("typing_extensions", reason="typing_extensions is not installed")
    import typing_sample_torch

    typing_sample_torch.main()


@pytest.mark.skipif(not HAVE_MLX, reason="MLX is not installed")
def test_mlx_typing_sample_runs():
    pytest.importorskip("typing_extensions", reason="typing_extensions is not installed")
    import typing_sample_mlx

    typing_sample_mlx.main()
