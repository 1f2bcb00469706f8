"""The Metal backend (objc/) against the fake Metal/MPS: faults, counters, the GIL, threads
and leaks. It runs only inside the fake-Metal build (tests/objc/build.py), where
tests/test_metal_fake.py starts it as `pytest tests/objc/fake_suite.py` with that build first
on PYTHONPATH; the file's name keeps the regular run from collecting it.

Every fault is one switch of the fake (tests/objc/fake/fake_table.h). Each test asserts what
objc/ documents for it: MPSNORM_ERR_BACKEND_FAILURE (MPSNormError, whatever the backend
asked) or MPSNORM_ERR_UNSUPPORTED (backend="auto" runs the call on the CPU and says so in
last_backend; backend="metal" raises ValueError); outputs given with out= untouched after an
error; no fake object left alive once the kernel object is gone; the same object right again
once the fault is cleared, except after UNSUPPORTED, which an engine remembers (a new object
asks Metal again). Expected values come from the float64 reference.
"""
import os
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest

import fake_metal
import mpsnorm
import reference as ref
from mpsnorm import MPSNormError
from reference import assert_close, random_array

FAKE = fake_metal.loaded()
SHAPE = (3, 5, 6, 7)  # N = 3 images, C = 5 channels: two texture slices per image
THREAD_CALLS = int(os.environ.get("MPSNORM_FAKE_THREAD_CALLS", "20"))
LCN = dict(alpha=0.7, beta=0.75, delta=0.05, p0=0.8, pm=0.1, ps=1.3)
GAMMA = [1.5, -0.75, 0.3, 2.0, 0.5]
BETA = [0.25, -1.0, 0.0, 0.5, 3.0]


@pytest.fixture(autouse=True)
def fake():
    if FAKE is None:
        pytest.fail("this file runs inside the fake-Metal build (tests/test_metal_fake.py "
                    "starts it); mpsnorm here is %s" % mpsnorm.__file__)
    mpsnorm.backends()  # the process-wide device and queue exist before anything is counted
    FAKE.reset()
    FAKE.selfcheck(False)  # each call's own work is counted; the self-check's tests enable it
    FAKE.min_call_bytes(0)  # backend="auto" sends the small calls here to Metal too
    yield FAKE
    FAKE.wait_idle()
    FAKE.reset()
    FAKE.min_call_bytes(None)


# ---- the four kernels, their inputs, reference and output buffers -------------------------

class Case:
    """One kernel on SHAPE-sized float32 data: make(backend), inputs, float64 expectation."""

    def __init__(self, name, seed=1, shape=SHAPE, dtype=np.float32, layout="NCHW"):
        self.name = name
        self.layout = layout
        self.channels = ref.to_nchw(np.empty(shape), layout).shape[1]
        rng = np.random.default_rng(seed)
        self.dtype = dtype
        self.x = random_array(rng, shape, dtype, -2.0, 3.0)
        self.dy = random_array(rng, shape, dtype)
        self.gradient = name.endswith("gradient")

    def make(self, backend):
        c, layout = self.channels, self.layout
        gamma, beta = (GAMMA, BETA) if c == len(GAMMA) else (None, None)
        if self.name == "lcn_forward":
            return mpsnorm.LocalContrastNormalization(3, layout=layout, backend=backend, **LCN)
        if self.name == "lcn_gradient":
            return mpsnorm.LocalContrastNormalizationGradient(3, layout=layout, backend=backend,
                                                              **LCN)
        if self.name == "inorm_forward":
            return mpsnorm.InstanceNormalization(c, gamma=gamma, beta=beta, layout=layout,
                                                 backend=backend)
        return mpsnorm.InstanceNormalizationGradient(c, gamma=gamma, layout=layout,
                                                     backend=backend)

    def expected(self):
        gamma, beta = (GAMMA, BETA) if self.channels == len(GAMMA) else (None, None)
        layout = self.layout
        if self.name == "lcn_forward":
            return [ref.lcn_forward(self.x, 3, 3, layout=layout, **LCN)]
        if self.name == "lcn_gradient":
            return [ref.lcn_gradient(self.dy, self.x, 3, 3, layout=layout, **LCN)]
        if self.name == "inorm_forward":
            return [ref.inorm_forward(self.x, gamma, beta, layout=layout)]
        return list(ref.inorm_gradient(self.dy, self.x, gamma, layout=layout))

    def outputs(self):
        """Output buffers filled with a sentinel, as a call's keyword arguments."""
        out = np.full(self.x.shape, ref.SENTINEL, self.dtype)
        if self.name != "inorm_gradient":
            return {"out": out}
        channels = np.full(self.channels, ref.SENTINEL, np.float32)
        return {"out": out, "out_gamma": channels, "out_beta": channels.copy()}

    def call(self, kernel, **outputs):
        result = kernel(self.dy, self.x, **outputs) if self.gradient else kernel(self.x, **outputs)
        return list(result) if isinstance(result, tuple) else [result]

    def check(self, results, what):
        for got, want in zip(results, self.expected()):
            assert_close(got, want, self.dtype, scale_from=(self.dy if self.gradient else self.x,),
                         what="%s %s" % (self.name, what))


KERNELS = ("lcn_forward", "lcn_gradient", "inorm_forward", "inorm_gradient")
GRADIENTS = ("lcn_gradient", "inorm_gradient")
INORM_GRADIENT = ("inorm_gradient",)


def test_all_kernels_run_on_the_fake():
    for name in KERNELS:
        case = Case(name)
        kernel = case.make("metal")
        case.check(case.call(kernel), "on Metal")
        assert kernel.last_backend == "metal"
    counts = FAKE.counts()
    assert counts["commits"] == counts["gpu_buffers_run"] == len(KERNELS)
    assert counts["temporary_readcount_leaks"] == 0 and counts["unfilled_states"] == 0


# ---- faults ----------------------------------------------------------------------------------

N = SHAPE[0]
# (switch, value, kernels it breaks, documented status, words of the message)
FAULTS = [
    ("lcn_forward_init_nil", 1, ("lcn_forward", "lcn_gradient"), "unsupported",
     "could not make MPSCNNLocalContrastNormalization with a 3 x 3 kernel"),
    ("lcn_gradient_init_nil", 1, ("lcn_gradient",), "unsupported",
     "could not make MPSCNNLocalContrastNormalizationGradient"),
    ("inorm_forward_init_nil", 1, ("inorm_forward", "inorm_gradient"), "unsupported",
     "could not make MPSCNNInstanceNormalization for 5 channels"),
    ("inorm_gradient_init_nil", 1, INORM_GRADIENT, "unsupported",
     "could not make MPSCNNInstanceNormalizationGradient"),
    ("no_batch_states_encode", 1, GRADIENTS, "unsupported",
     "lacks encodeBatchToCommandBuffer:sourceImages:destinationStates:destinationImages:"),
    ("result_state_nil", 1, GRADIENTS, "unsupported", "returned no gradient state"),
    ("gradient_buffer_mode", 2, INORM_GRADIENT, "unsupported",
     "gradientForGamma of image 0 is GPU-private"),
    ("gradient_buffer_short", 1, INORM_GRADIENT, "unsupported",
     "gradientForGamma of image 0 holds 16 bytes, fewer than 20"),
    ("gradient_buffer_nil", 1, INORM_GRADIENT, "failure",
     "the gradient state of image 0 has no gradientForGamma buffer"),
    ("command_buffer_error", 1, KERNELS, "failure",
     "the Metal command buffer did not complete (status 5): Internal error"),
    ("encode_throws", 1, KERNELS, "failure",
     "Metal raised an exception: MPSCNN"),
    ("descriptor_nil", 1, KERNELS, "failure", "could not describe the MPS images"),
    ("no_command_buffer", 1, KERNELS, "failure", "could not create a Metal command buffer"),
    ("no_blit_encoder", 1, KERNELS, "failure", "could not create a blit encoder"),
    ("no_shared_buffer", 1, KERNELS, "failure", "could not allocate a shared buffer"),
    ("texture_nil", 1, KERNELS, "failure", "could not allocate the texture of an MPS image"),
    # the pool makes a call's images in order: x or dy, then x (gradients), then outputs
    ("image_init_fails_at", 1, KERNELS, "failure",
     "could not allocate the texture of an MPS image of 5 x 6 x 7"),
    ("image_init_fails_at", N + 2, KERNELS, "failure", "could not allocate the texture"),
    ("image_init_fails_at", 2 * N + 3, GRADIENTS, "failure", "could not allocate the texture"),
]
FAULT_CASES = [(switch, value, kernel, status, words)
               for switch, value, kernels, status, words in FAULTS for kernel in KERNELS
               if kernel in kernels]


def fault_id(case):
    return "%s=%d-%s" % (case[0], case[1], case[2])


def assert_untouched(outputs):
    for name, array in outputs.items():
        assert np.all(array == ref.SENTINEL), "%s was written by a call that failed" % name


@pytest.mark.parametrize("fault", FAULT_CASES, ids=[fault_id(c) for c in FAULT_CASES])
@pytest.mark.parametrize("backend", ["metal", "auto"])
def test_fault(fault, backend):
    switch, value, name, status, words = fault
    case = Case(name)
    before = FAKE.live_objects()
    kernel = case.make(backend)
    assert kernel.backend == "metal"
    outputs = case.outputs()
    FAKE.set(switch, value)
    if status == "unsupported" and backend == "auto":
        results = case.call(kernel, **outputs)
        assert kernel.last_backend == "cpu"
        case.check(results, "after %s=%d, on the CPU" % (switch, value))
    else:
        error = MPSNormError if status == "failure" else ValueError
        with pytest.raises(error) as raised:
            case.call(kernel, **outputs)
        message, kind = str(raised.value), type(raised.value)
        del raised  # its traceback holds the kernel object
        assert words in message, message
        assert status == "failure" or kind is ValueError, kind
        assert_untouched(outputs)
    FAKE.reset()
    if status == "unsupported":
        # the engine remembers what its MPS cannot do: nothing is staged for Metal again
        if backend == "auto":
            case.check(case.call(kernel), "once %s is cleared, still on the CPU" % switch)
            assert kernel.last_backend == "cpu"
        else:
            with pytest.raises(ValueError, match=words):
                case.call(kernel)
        assert FAKE.counts()["command_buffers"] == 0, "staged for Metal again"
        kernel = case.make(backend)  # a new engine asks Metal again
    case.check(case.call(kernel), "once %s is cleared" % switch)
    assert kernel.last_backend == "metal"
    del kernel
    assert FAKE.live_objects() == before, "fake objects leaked by %s=%d" % (switch, value)


@pytest.mark.parametrize("name", KERNELS)
def test_faults_of_other_kernels_leave_this_one_alone(name):
    for switch, value, kernels, _, _ in FAULTS:
        if name in kernels or switch == "image_init_fails_at":
            continue
        FAKE.set(switch, value)
        case = Case(name)
        kernel = case.make("metal")
        case.check(case.call(kernel), "with %s=%d" % (switch, value))
        assert kernel.last_backend == "metal"
        FAKE.reset()


@pytest.mark.parametrize("switch", ["no_device", "device_throws", "device_unsupported",
                                    "no_command_queue"])
def test_no_usable_device_means_cpu(switch):
    """The device is chosen once per process: a fresh interpreter with the switch set."""
    program = r"""
import numpy as np, mpsnorm, fake_metal, reference as ref
fake = fake_metal.loaded()
assert mpsnorm.backends() == ("cpu",), mpsnorm.backends()
x = np.random.default_rng(1).uniform(-1, 1, (2, 5, 6, 7)).astype(np.float32)
auto = mpsnorm.LocalContrastNormalization(3, alpha=1.0)
assert auto.backend == "cpu", auto.backend
ref.assert_close(auto(x), ref.lcn_forward(x, 3, 3, alpha=1.0), np.float32, (x,))
assert auto.last_backend == "cpu"
try:
    mpsnorm.LocalContrastNormalization(3, backend="metal")
except ValueError as error:
    assert "not available" in str(error), error
else:
    raise AssertionError("backend='metal' was accepted without a device")
fake.wait_idle()
print("devices", fake.get("devices"), "live", fake.get("live_objects"), "commits",
      fake.get("commits"))
"""
    env = dict(os.environ, MPSNORM_FAKE_METAL="%s=1" % switch)
    here = os.path.dirname(os.path.abspath(__file__))
    env["PYTHONPATH"] = os.pathsep.join([here, os.path.dirname(here)] +
                                        env.get("PYTHONPATH", "").split(os.pathsep))
    result = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    devices = 0 if switch in ("no_device", "device_throws") else 1
    # a device that is not kept is released: nothing of the fake stays alive, nothing ran
    assert result.stdout.split()[-6:] == ["devices", str(devices), "live", "0", "commits",
                                          "0"], result.stdout


# ---- behaviours objc/ must handle --------------------------------------------------------

def test_managed_gradient_buffers_are_synchronized():
    case = Case("inorm_gradient")
    FAKE.set("gradient_buffer_mode", 1)  # MTLStorageModeManaged
    kernel = case.make("metal")
    case.check(case.call(kernel), "with managed gamma/beta gradient buffers")
    counts = FAKE.counts()
    # in the blit that also downloads the output: no encoder of their own
    assert counts["blit_encoders"] == 2 and counts["buffer_synchronizations"] == 2 * N


def test_one_state_for_the_batch_when_mps_reuses_it():
    case = Case("lcn_gradient")
    FAKE.set("result_state_shared", 1)
    kernel = case.make("metal")
    case.check(case.call(kernel), "with a state reused across the batch")
    assert FAKE.counts()["gradient_states"] == 1


@pytest.mark.parametrize("gradient", [False, True], ids=["forward", "gradient"])
def test_epsilon_changes_with_the_same_gamma(gradient):
    """The cached kernel (same gamma and beta) takes each call's epsilon."""
    case = Case("inorm_gradient" if gradient else "inorm_forward")
    kernel = case.make("metal")
    for epsilon in (1e-5, 0.5, 4.0):
        kernel.epsilon = epsilon
        results = case.call(kernel)
        expected = (ref.inorm_gradient(case.dy, case.x, GAMMA, epsilon=epsilon) if gradient
                    else [ref.inorm_forward(case.x, GAMMA, BETA, epsilon=epsilon)])
        for got, want in zip(results, expected):
            assert_close(got, want, np.float32, scale_from=(case.dy if gradient else case.x,),
                         what="epsilon %g" % epsilon)
    assert FAKE.counts()["kernels"] == (2 if gradient else 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["float32", "float16"])
@pytest.mark.parametrize("layout", ref.LAYOUTS)
@pytest.mark.parametrize("name", KERNELS)
def test_counts_per_call(name, layout, dtype):
    """What one call costs: its first call makes the images and buffers of the shape, later
    calls none; every call copies each input into the textures and the output out of them
    once (two blit encoders, no synchronization), runs one command buffer, and (gradients) a
    forward pass into temporary images with one state per image."""
    n, c, h, w = 4, 6, 5, 3
    case = Case(name, shape=ref.layout_shape((n, c, h, w), layout, 4), dtype=dtype,
                layout=layout)
    kernel = case.make("metal")
    inputs = 2 if case.gradient else 1
    texels = 2 * h * w * 4 * np.dtype(dtype).itemsize  # 6 channels: two RGBA slices an image
    for call in ("first", "second"):
        FAKE.reset()
        case.check(case.call(kernel), "%s %s, %s call" % (layout, np.dtype(dtype).name, call))
        counts = FAKE.counts()
        made = call == "first"
        expected = {
            "images": n * (inputs + 1) if made else 0,
            "textures": n * (inputs + 1) if made else 0,
            "texture_bytes": n * (inputs + 1) * texels if made else 0,
            "buffers": 2 if made else 0,
            "buffer_bytes": n * (inputs + 1) * texels if made else 0,
            "temporary_images": n if case.gradient else 0, "temporary_readcount_leaks": 0,
            "blit_copies": n * 2 * (inputs + 1), "bytes_uploaded": n * inputs * texels,
            "bytes_downloaded": n * texels,
            "encodes": n * (2 if case.gradient else 1),
            "gradient_states": n if case.gradient else 0, "unfilled_states": 0,
            "command_buffers": 1, "commits": 1, "waits": 1, "blit_encoders": 2,
            "buffer_synchronizations": 0, "gpu_buffers_run": 1, "kernels": 0 if not made else
            (2 if case.gradient else 1),
        }
        assert {key: counts[key] for key in expected} == expected, call


def test_counts_of_one_lcn_gradient_call(capsys):
    """The figures of one (8, 16, 64, 64) float32 LCN gradient call once the shape has been
    seen: nothing allocated, the bytes of the tensors moved once each way, one command
    buffer, two blit encoders, no synchronization."""
    rng = np.random.default_rng(2)
    x = random_array(rng, (8, 16, 64, 64), np.float32)
    dy = random_array(rng, (8, 16, 64, 64), np.float32)
    kernel = mpsnorm.LocalContrastNormalizationGradient(5, backend="metal", alpha=1.0)
    kernel(dy, x)
    FAKE.reset()
    dx = kernel(dy, x)
    counts = FAKE.counts()
    assert_close(dx, ref.lcn_gradient(dy, x, 5, 5, alpha=1.0), np.float32, scale_from=(dy,),
                 what="LCN gradient (8, 16, 64, 64)")
    tensor = 8 * 16 * 64 * 64 * 4  # 16 channels: 4 full slices, no padding
    assert counts["images"] == counts["textures"] == counts["buffers"] == 0
    assert counts["bytes_uploaded"] == 2 * tensor and counts["bytes_downloaded"] == tensor
    assert counts["blit_copies"] == 8 * 4 * 3
    assert counts["command_buffers"] == 1 and counts["blit_encoders"] == 2
    assert counts["buffer_synchronizations"] == 0 and counts["temporary_images"] == 8
    assert counts["kernels"] == 0 and counts["encodes"] == 16
    with capsys.disabled():
        print("\none (8, 16, 64, 64) float32 LCN gradient call on the fake, shape seen before: " +
              ", ".join("%s %d" % item for item in sorted(counts.items())
                        if item[0] not in ("live_objects", "waiting")))


def test_where_a_calls_time_went():
    """last_metal_seconds: the CPU's staging and the GPU's time as the fake GPU reports it
    (its command buffers each take gpu_ms); None for a call the CPU ran."""
    case = Case("lcn_gradient")
    kernel = case.make("metal")
    assert kernel.last_metal_seconds is None
    FAKE.set("gpu_ms", 30)
    case.check(case.call(kernel), "with a slow GPU")
    seconds = kernel.last_metal_seconds
    assert set(seconds) == {"staging", "gpu"}
    assert seconds["staging"] > 0 and 0.03 <= seconds["gpu"] < 10, seconds
    auto = case.make("auto")
    FAKE.min_call_bytes(None)  # this small call stays on the CPU
    auto(case.dy, case.x)
    assert auto.last_backend == "cpu" and auto.last_metal_seconds is None


def test_the_bench_metal_rows_run(monkeypatch):
    """python -m mpsnorm bench's Metal rows (mpsnorm.bench_metal) run through objc/, here on
    one small shape: a row per kernel and dtype, each a whole call with its staging and GPU
    time (the fake GPU takes at least gpu_ms a command buffer). The fake's figures are no
    GPU's and are not printed."""
    import re
    from mpsnorm import bench_metal

    monkeypatch.setattr(bench_metal, "SHAPES", ((2, 8, 32, 32),))
    FAKE.set("gpu_ms", 2)
    rows = bench_metal.measure()
    assert len(rows) == len(bench_metal.KERNELS) * len(bench_metal.DTYPES)
    for row in rows:
        found = re.match(r"([\d.]+) ms \(of a call: staging ([\d.]+) ms, GPU ([\d.]+) ms\); "
                         r"CPU ([\d.]+) ms", row.text)
        assert found, row.text
        whole, staging, gpu, cpu = map(float, found.groups())
        assert gpu >= 2 and staging > 0 and whole > 0, row.text
        assert row.value > 0 and cpu > 0, row.text


# ---- the device's limits: chunks, refusals, the pool ------------------------------------------

def image_bytes(shape, dtype=np.float32):
    """Bytes of one image's textures: 4 channels a texel (the most MPS uses)."""
    _, c, h, w = shape
    return (c + 3) // 4 * 4 * h * w * np.dtype(dtype).itemsize


@pytest.mark.parametrize("name", KERNELS)
def test_a_batch_split_over_command_buffers(name):
    """A working set that holds two images of the call at once: the batch of 5 runs as 3
    command buffers, each image lands in its place, and a failure of the last leaves the
    output as it was (nothing is written until every chunk has completed)."""
    shape = (5, 5, 6, 7)
    case = Case(name, shape=shape)
    tensors = 3 if case.gradient else 2
    per_image = image_bytes(shape) * (2 * tensors + (1 if case.gradient else 0))
    FAKE.set("working_set", 2 * 2 * per_image)  # half of it for chunks: 2 images
    kernel = case.make("metal")
    case.check(case.call(kernel), "in chunks of 2 images")
    counts = FAKE.counts()
    assert counts["commits"] == counts["gpu_buffers_run"] == 3
    FAKE.reset()
    FAKE.set("working_set", 2 * 2 * per_image)
    FAKE.set("command_buffer_error_at", 3)
    outputs = case.outputs()
    with pytest.raises(MPSNormError, match="did not complete"):
        case.call(kernel, **outputs)
    assert FAKE.counts()["commits"] == 3
    assert_untouched(outputs)


def test_a_buffer_shorter_than_its_chunk_splits_it():
    """maxBufferLength bounds the images of a chunk as well as the working set does."""
    shape = (4, 5, 6, 7)
    case = Case("lcn_forward", shape=shape)
    FAKE.set("max_buffer_length", image_bytes(shape) * 2)
    kernel = case.make("metal")
    case.check(case.call(kernel), "2 images a buffer")
    assert FAKE.counts()["commits"] == 2


@pytest.mark.parametrize("limit, words", [
    ("max_buffer_length", "more than the 1000 bytes of the longest buffer"),
    ("working_set", "more than half the 1000 bytes this Metal device recommends")])
def test_an_image_the_device_cannot_hold_is_refused(limit, words):
    case = Case("inorm_gradient")
    FAKE.set(limit, 1000)
    with pytest.raises(ValueError, match=words):
        case.call(case.make("metal"), **case.outputs())
    auto = case.make("auto")
    case.check(case.call(auto), "too large for the device, on the CPU")
    assert auto.last_backend == "cpu" and FAKE.counts()["command_buffers"] == 0
    FAKE.reset()  # the refusal is of that size on that device, not of the class
    case.check(case.call(auto), "once the device holds it")
    assert auto.last_backend == "metal"


def test_the_pool_keeps_a_quarter_of_the_working_set():
    """The images and buffers an engine keeps between calls stay within a quarter of the
    working set, least recently used out first: after enough other shapes, the first shape
    allocates again; with room for all, it allocates nothing."""
    def first_shape_after_others(working_set):
        FAKE.reset()
        FAKE.set("working_set", working_set)
        kernel = mpsnorm.LocalContrastNormalization(3, backend="metal")
        rng = np.random.default_rng(9)
        first = random_array(rng, (2, 4, 64, 64), np.float32)
        kernel(first)
        for width in range(65, 73):
            kernel(random_array(rng, (2, 4, 64, width), np.float32))
        live = FAKE.live_objects()
        before = FAKE.counts()
        assert_close(kernel(first), ref.lcn_forward(first, 3, 3), np.float32, (first,),
                     what="LCN after other shapes")
        after = FAKE.counts()
        return after["images"] - before["images"], after["buffers"] - before["buffers"], live

    # a shape's 4 images and 2 buffers take 512 KiB to 576 KiB
    images, buffers, live_small = first_shape_after_others(4 << 20)  # the pool keeps 1 MiB
    assert images == 4, (images, buffers)
    images, buffers, live_large = first_shape_after_others(8 << 30)
    assert images == 0 and buffers == 0, (images, buffers)
    # an unbounded pool keeps the 4 images of each of the 9 shapes; 1 MiB, those of one
    assert live_large - live_small >= 7 * 4


def best_time(function, repeats=30):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def test_figures_behind_the_small_call_bound(capsys):
    """Prints what a Metal call costs on the fake beyond its arithmetic (staging, a command
    buffer handed to the fake GPU's thread, the wait) and the tensor size at which the CPU's
    LCN gradient takes as long: the floor under MPSNORM_METAL_MIN_CALL_BYTES on this machine
    (a real command buffer costs more, which is why the bound is larger). Figures only."""
    rng = np.random.default_rng(12)
    tiny = random_array(rng, (1, 1, 8, 8), np.float32)
    metal = mpsnorm.LocalContrastNormalizationGradient(3, backend="metal")
    cpu = mpsnorm.LocalContrastNormalizationGradient(3, backend="cpu")
    overhead = best_time(lambda: metal(tiny, tiny)) - best_time(lambda: cpu(tiny, tiny))
    size = 8
    while size < 2048:
        x = random_array(rng, (1, 1, size, size), np.float32)
        if best_time(lambda: cpu(x, x), 10) >= overhead:
            break
        size *= 2
    with capsys.disabled():
        print("\nfake Metal call overhead %.0f us; the CPU LCN gradient takes as long at "
              "(1, 1, %d, %d) float32, %d KiB a tensor" % (overhead * 1e6, size, size,
                                                          size * size * 4 // 1024))
    assert overhead > 0


# ---- the self-check --------------------------------------------------------------------------

def no_warning():
    """A context in which an MPSNormWarning fails the test."""
    context = warnings.catch_warnings()
    context.__enter__()
    warnings.simplefilter("error", mpsnorm.MPSNormWarning)
    return context


REPORT_NAMES = {"lcn_forward": "lcn_forward", "lcn_gradient": "lcn_gradient",
                "inorm_forward": "instance_norm_forward",
                "inorm_gradient": "instance_norm_gradient"}


def report_of(kernel, **fields):
    matches = [check for check in mpsnorm.metal_report() if check["kernel"] == kernel and all(
        check[key] == value for key, value in fields.items())]
    assert len(matches) == 1, (kernel, fields, mpsnorm.metal_report())
    return matches[0]


@pytest.mark.parametrize("name", KERNELS)
def test_selfcheck_passes_a_correct_mps(name, capsys):
    FAKE.selfcheck(True)
    case = Case(name)
    kernel = case.make("metal")
    context = no_warning()
    try:
        case.check(case.call(kernel), "after its self-check")
    finally:
        context.__exit__(None, None, None)
    assert kernel.last_backend == "metal"
    check = report_of(REPORT_NAMES[name], dtype="float32", layout="NCHW")
    assert check["verdict"] == "passed" and check["error"] <= check["tolerance"], check
    assert not check["gradient_alone"]  # the fake's LCN state needs its forward pass
    assert check["seconds"] > 0
    with capsys.disabled():
        print("\nself-check of %s: error %.2g of the scale (allowed %.0e), %.1f ms"
              % (check["description"], check["error"], check["tolerance"],
                 check["seconds"] * 1e3))


def test_selfcheck_finds_a_gradient_that_needs_no_forward_pass():
    """Where MPS's LCN gradient state holds only properties, the check finds the gradient
    right alone and its calls skip the forward pass: n encodes, no temporary images."""
    FAKE.set("lcn_state_holds_properties", 1)
    FAKE.selfcheck(True)
    case = Case("lcn_gradient")
    kernel = case.make("metal")
    case.check(case.call(kernel), "first call")
    assert report_of("lcn_gradient", dtype="float32", layout="NCHW")["gradient_alone"]
    FAKE.reset()
    FAKE.set("lcn_state_holds_properties", 1)
    case.check(case.call(kernel), "without the forward pass")
    counts = FAKE.counts()
    assert counts["encodes"] == N and counts["temporary_images"] == 0, counts


@pytest.mark.parametrize("fault, window, alpha, words", [
    ("lcn_even_mirrored", 4, 0.7, "even window"),
    ("lcn_gradient_without_alpha", 3, 0.7, "alpha")])
def test_selfcheck_catches_a_wrong_mps(fault, window, alpha, words):
    """An MPS that computes another function: the first call of the class warns once and
    runs on the CPU (backend="auto"), later calls run there silently, backend="metal" fails
    with the same words, and the classes the fault leaves right still run on Metal."""
    FAKE.set(fault, 1)
    FAKE.selfcheck(True)
    rng = np.random.default_rng(11)
    x = random_array(rng, SHAPE, np.float32)
    dy = random_array(rng, SHAPE, np.float32)
    params = dict(LCN, alpha=alpha)
    expected = ref.lcn_gradient(dy, x, window, window, **params)
    auto = mpsnorm.LocalContrastNormalizationGradient(window, backend="auto", **params)
    with pytest.warns(mpsnorm.MPSNormWarning, match="self-check of .*%s.* failed" % words):
        got = auto(dy, x)
    assert auto.last_backend == "cpu"
    assert_close(got, expected, np.float32, (dy,), what="after a failed self-check")
    context = no_warning()
    try:
        assert_close(auto(dy, x), expected, np.float32, (dy,), what="second call")
    finally:
        context.__exit__(None, None, None)
    assert auto.last_backend == "cpu"
    explicit = mpsnorm.LocalContrastNormalizationGradient(window, backend="metal", **params)
    with pytest.raises(MPSNormError, match="self-check of .*failed"):
        explicit(dy, x)
    check = report_of("lcn_gradient", dtype="float32", layout="NCHW", even_window=window % 2 == 0,
                      alpha_nonzero=True)
    assert check["verdict"] == "failed" and check["error"] > check["tolerance"], check
    # odd windows / alpha 0: the other class of the same kernel is right on this MPS
    other = dict(params, alpha=0.0) if fault == "lcn_gradient_without_alpha" else params
    other_window = window + 1 if fault == "lcn_even_mirrored" else window
    right = mpsnorm.LocalContrastNormalizationGradient(other_window, backend="auto", **other)
    assert_close(right(dy, x), ref.lcn_gradient(dy, x, other_window, other_window, **other),
                 np.float32, (dy,), what="a class the fault leaves right")
    assert right.last_backend == "metal"


def test_metal_report_checks_every_class():
    """check_all=True checks the 44 classes: on an MPS that mirrors even windows, exactly the
    16 even-window LCN classes fail."""
    FAKE.set("lcn_even_mirrored", 1)
    FAKE.selfcheck(True)
    report = mpsnorm.metal_report(check_all=True)
    assert len(report) == 44
    failed = [check for check in report if check["verdict"] == "failed"]
    assert len(failed) == 16 and all(check["even_window"] for check in failed), failed
    assert all(check["verdict"] == "passed" for check in report if check not in failed)


def test_selfcheck_off_trusts_mps():
    """MPSNORM_METAL_SELFCHECK=0: nothing is checked, every class is trusted (a fresh
    interpreter: the setting is read once)."""
    program = r"""
import numpy as np, warnings, mpsnorm, fake_metal
fake = fake_metal.loaded()
warnings.simplefilter("error")
x = np.random.default_rng(1).uniform(-1, 1, (2, 5, 6, 7)).astype(np.float32)
lcn = mpsnorm.LocalContrastNormalization(4, backend="metal")
lcn(x)
fake.wait_idle()
print(lcn.last_backend, [c["verdict"] for c in mpsnorm.metal_report()], fake.get("commits"))
"""
    output = run_program(program, MPSNORM_METAL_SELFCHECK="0",
                         MPSNORM_FAKE_METAL="lcn_even_mirrored=1")
    assert output.split("\n")[-1] == "metal ['trusted'] 1", output


def run_program(program, **env):
    environment = dict(os.environ, **env)
    here = os.path.dirname(os.path.abspath(__file__))
    environment["PYTHONPATH"] = os.pathsep.join(
        [here, os.path.dirname(here)] + environment.get("PYTHONPATH", "").split(os.pathsep))
    result = subprocess.run([sys.executable, "-c", program], env=environment,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


# ---- fork ----------------------------------------------------------------------------------

def test_a_forked_child_runs_on_the_cpu():
    """Metal is not fork-safe: a child forked after the device exists never uses it. Its
    inherited auto kernel runs on the CPU (right), backend="metal" objects refuse, and
    mpsnorm.backends() says cpu only; the parent keeps Metal."""
    program = r"""
import multiprocessing, numpy as np, mpsnorm, reference as ref
x = np.random.default_rng(1).uniform(-1, 1, (2, 5, 6, 7)).astype(np.float32)
auto = mpsnorm.LocalContrastNormalization(3, backend="auto")
metal = mpsnorm.LocalContrastNormalization(3, backend="metal")
metal(x)
assert metal.last_backend == "metal"

def child(queue):
    words = []
    words.append(",".join(mpsnorm.backends()))
    ref.assert_close(auto(x), ref.lcn_forward(x, 3, 3), np.float32, (x,))
    words.append(auto.last_backend)
    try:
        metal(x)
        words.append("metal ran")
    except ValueError as error:
        words.append("refused" if "fork" in str(error) else str(error))
    queue.put(" ".join(words))

context = multiprocessing.get_context("fork")
queue = context.Queue()
process = context.Process(target=child, args=(queue,))
process.start()
answer = queue.get(timeout=120)
process.join(120)
metal(x)
print(answer, process.exitcode, metal.last_backend)
"""
    output = run_program(program, MPSNORM_METAL_MIN_CALL_BYTES="0")
    assert output.split("\n")[-1] == "cpu cpu refused 0 metal", output


# ---- the GIL, threads, leaks ----------------------------------------------------------------

def test_gil_is_released_while_the_gpu_runs():
    """The fake GPU holds the command buffer until another Python thread releases it (or
    fails it after 20 s): that thread can run only if the call waits without the GIL."""
    case = Case("lcn_gradient")
    kernel = case.make("metal")
    seen_waiting = []

    def release():
        while FAKE.get("waiting") == 0:
            pass
        seen_waiting.append(FAKE.get("waiting"))
        FAKE.set("gpu_hold_ms", 0)

    FAKE.set("gpu_hold_ms", 20000)
    helper = threading.Thread(target=release)
    helper.start()
    try:
        results = case.call(kernel)
    finally:
        FAKE.set("gpu_hold_ms", 0)
        helper.join()
    assert seen_waiting == [1]
    case.check(results, "after the GPU was released")


def test_engine_lock_is_not_held_during_the_gpu_wait():
    """While one call waits for the GPU (held by the fake), a second call on the same kernel
    object (same engine cache and lock) gets through encoding and commits."""
    case = Case("lcn_gradient")
    kernel = case.make("metal")
    results = {}

    def call(name):
        results[name] = case.call(kernel)

    def wait_for(counter, value):
        deadline = time.monotonic() + 20
        while FAKE.get(counter) < value and time.monotonic() < deadline:
            time.sleep(0.001)
        return FAKE.get(counter) >= value

    FAKE.set("gpu_hold_ms", 30000)
    first = threading.Thread(target=call, args=("first",))
    second = threading.Thread(target=call, args=("second",))
    try:
        first.start()
        held = wait_for("waiting", 1)
        second.start()
        both_committed = wait_for("commits", 2)
    finally:
        FAKE.set("gpu_hold_ms", 0)
        first.join()
        second.join()
    assert held, "the first call never reached waitUntilCompleted"
    assert both_committed, "the second call could not commit while the first one waited"
    for name in ("first", "second"):
        case.check(results[name], name + " call")


def test_threads_share_one_engine():
    """8 threads, one kernel object each kind (one Metal engine and cache each), every
    result bit-equal to the serial one."""
    rng = np.random.default_rng(4)
    kinds = {
        "lcn_gradient": mpsnorm.LocalContrastNormalizationGradient(5, backend="metal", **LCN),
        "inorm_gradient": mpsnorm.InstanceNormalizationGradient(SHAPE[1], gamma=GAMMA,
                                                                backend="metal"),
    }
    inputs = [(random_array(rng, SHAPE, np.float32), random_array(rng, SHAPE, np.float32))
              for _ in range(8)]
    serial = {name: [kernel(dy, x) for dy, x in inputs] for name, kernel in kinds.items()}
    failures = []

    def work(i):
        dy, x = inputs[i]
        for call in range(THREAD_CALLS):
            name = ("lcn_gradient", "inorm_gradient")[(i + call) % 2]
            got = kinds[name](dy, x)
            want = serial[name][i]
            for a, b in zip(got if isinstance(got, tuple) else (got,),
                            want if isinstance(want, tuple) else (want,)):
                if a.tobytes() != b.tobytes():
                    failures.append((i, call, name))

    FAKE.reset()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    counts = FAKE.counts()
    assert counts["commits"] == counts["gpu_buffers_run"] == 8 * THREAD_CALLS
    assert counts["temporary_readcount_leaks"] == 0 and counts["unfilled_states"] == 0


def test_no_fake_object_outlives_its_kernel():
    before = FAKE.live_objects()
    for name in KERNELS:
        for dtype in (np.float32, np.float16):
            case = Case(name, dtype=dtype)
            kernel = case.make("metal")
            case.check(case.call(kernel), "leak run")
            case.check(case.call(kernel, **case.outputs()), "leak run with out=")
            del kernel
    assert FAKE.live_objects() == before
