"""DLPack: every kernel takes objects with __dlpack__ / __dlpack_device__ (CPU
only), zero-copy, with their strides, byte offset and read-only flag; out= may
be one too. NumPy stands in as the producer (wrapped so that only its DLPack
methods are visible), in both the versioned (DLPack 1.0) and the legacy form;
PyTorch tensors are tested where torch is installed (MPSNORM_REQUIRE_TORCH=1
makes its absence a failure)."""
import gc
import os
import sys
import threading

import numpy as np
import pytest

import mpsnorm
import reference as ref

SHAPE = (2, 3, 7, 9)
CHANNELS = SHAPE[1]


def numpy_exports_versioned():
    try:
        np.zeros(1).__dlpack__(max_version=(1, 0))
    except TypeError:  # NumPy < 2.1: legacy capsules only
        return False
    return True


NUMPY_VERSIONED = numpy_exports_versioned()
needs_versioned_numpy = pytest.mark.skipif(
    not NUMPY_VERSIONED, reason=f"NumPy {np.__version__} exports no versioned DLPack (>= 2.1 does)")


class DLPackOnly:
    """Exposes an array through DLPack alone (no buffer protocol), as a versioned
    (DLPack >= 1.0) producer; records the keywords of each export."""

    def __init__(self, array):
        self.array = array
        self.exports = []

    def __dlpack__(self, **kwargs):
        self.exports.append(kwargs)
        return self.array.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self.array.__dlpack_device__()


class LegacyDLPack(DLPackOnly):
    """A producer from before DLPack 1.0: no max_version keyword, "dltensor" capsules."""

    def __dlpack__(self, stream=None):
        self.exports.append({"stream": stream})
        return self.array.__dlpack__()


class OnDevice(DLPackOnly):
    """Says it lives on another device; its __dlpack__ must not be called."""

    def __init__(self, array, device):
        super().__init__(array)
        self.device = device

    def __dlpack_device__(self):
        return self.device

    def __dlpack__(self, **kwargs):
        raise AssertionError("__dlpack__ called for a tensor on another device")


class Refusing(DLPackOnly):
    def __dlpack__(self, **kwargs):
        raise BufferError("this tensor cannot be exported")


class SameCapsuleTwice(DLPackOnly):
    """Returns one capsule for every export: the second consumer finds it used."""

    def __init__(self, array):
        super().__init__(array)
        self.capsule = array.__dlpack__(max_version=(1, 0)) if NUMPY_VERSIONED else \
            array.__dlpack__()

    def __dlpack__(self, **kwargs):
        return self.capsule


PRODUCERS = {"versioned": DLPackOnly, "legacy": LegacyDLPack}
KERNELS = ("LocalContrastNormalization", "LocalContrastNormalizationGradient",
           "InstanceNormalization", "InstanceNormalizationGradient")


def make_kernel(name, layout="NCHW"):
    if name.startswith("LocalContrast"):
        return getattr(mpsnorm, name)(3, 5, alpha=1.0, beta=0.75, layout=layout)
    return getattr(mpsnorm, name)(CHANNELS, gamma=[0.5, 1.0, 2.0], layout=layout)


def inputs_for(name, shape=SHAPE, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    count = 2 if name.endswith("Gradient") else 1
    return [ref.random_array(rng, shape, dtype) for _ in range(count)]


def as_tuple(result):
    return result if isinstance(result, tuple) else (result,)


def assert_same_results(got, expected, what):
    for i, (g, e) in enumerate(zip(as_tuple(got), as_tuple(expected))):
        ref.assert_bits_equal(np.asarray(g), np.asarray(e), f"{what} output #{i}")


# -- NumPy through DLPack --------------------------------------------------------------------

@pytest.mark.parametrize("producer", sorted(PRODUCERS))
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
@pytest.mark.parametrize("name", KERNELS)
def test_dlpack_inputs_give_the_buffer_protocol_results(name, dtype, producer):
    kernel = make_kernel(name)
    arrays = inputs_for(name, dtype=dtype)
    expected = kernel(*arrays)
    wrapped = [PRODUCERS[producer](a) for a in arrays]
    got = kernel(*wrapped)
    assert isinstance(as_tuple(got)[0], np.ndarray)  # out=None still allocates NumPy arrays
    assert_same_results(got, expected, name)
    if producer == "versioned" and NUMPY_VERSIONED:
        # Asked for DLPack 1.0 and for no copy.
        assert wrapped[0].exports == [{"max_version": (1, 0), "copy": False}]
    elif producer == "versioned":
        # NumPy < 2.1 refused the keywords (TypeError): the legacy call followed.
        assert wrapped[0].exports == [{"max_version": (1, 0), "copy": False}, {}]
    else:
        # The versioned request failed with TypeError; the legacy call followed.
        assert wrapped[0].exports == [{"stream": None}]


def strided_offset_reversed(array):
    """A view of `array`'s values with a byte offset, gaps and negative strides."""
    big = np.full(tuple(3 * s + 1 for s in array.shape), np.nan, array.dtype)
    view = big[1::3, ::-3, 1::3, ::-3][: array.shape[0], : array.shape[1],
                                       : array.shape[2], : array.shape[3]]
    view[...] = array
    return view


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("name", KERNELS)
def test_dlpack_strides_and_byte_offset(name, layout):
    kernel = make_kernel(name, layout)
    shape = SHAPE if layout == "NCHW" else (2, 7, 9, CHANNELS)
    arrays = inputs_for(name, shape=shape, dtype=np.float64)
    views = [strided_offset_reversed(a) for a in arrays]
    assert all(v.__array_interface__["data"][0] != v.base.__array_interface__["data"][0]
               for v in views)
    got = kernel(*[DLPackOnly(v) for v in views])
    # The same memory through the buffer protocol: the same kernel path, the same bits.
    assert_same_results(got, kernel(*views), name)
    # And the values of the contiguous arrays (kernels may sum in another order).
    for g, e in zip(as_tuple(got), as_tuple(kernel(*arrays))):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12 * np.abs(e).max())


@pytest.mark.parametrize("producer", sorted(PRODUCERS))
def test_dlpack_single_image_and_compact_strides(producer):
    kernel = make_kernel("LocalContrastNormalization")
    (x,) = inputs_for("LocalContrastNormalization", shape=(3, 6, 5))
    assert_same_results(kernel(PRODUCERS[producer](x)), kernel(x), "3-D image")


@pytest.mark.parametrize("producer", sorted(PRODUCERS))
@pytest.mark.parametrize("name", KERNELS)
def test_dlpack_out_is_written_in_place(name, producer):
    kernel = make_kernel(name)
    arrays = inputs_for(name)
    # A strided output with a byte offset: every other row of a larger array.
    big_out = np.full((2, 3, 14, 9), ref.SENTINEL, np.float32)
    out = big_out[:, :, 1::2]
    expected = as_tuple(kernel(*arrays, out=np.full((2, 3, 14, 9), 0, np.float32)[:, :, 1::2]))
    wrapped_out = PRODUCERS[producer](out)
    kwargs = {"out": wrapped_out}
    if name == "InstanceNormalizationGradient":
        out_gamma = np.full(2 * CHANNELS, ref.SENTINEL, np.float32)
        out_beta = np.full(CHANNELS, ref.SENTINEL, np.float32)
        kwargs["out_gamma"] = PRODUCERS[producer](out_gamma[::2])
        kwargs["out_beta"] = PRODUCERS[producer](out_beta)
    result = as_tuple(kernel(*arrays, **kwargs))
    assert result[0] is wrapped_out
    ref.assert_bits_equal(out, expected[0], "out")
    assert np.all(big_out[:, :, 0::2] == ref.SENTINEL)  # nothing written between the rows
    if name == "InstanceNormalizationGradient":
        ref.assert_bits_equal(out_gamma[::2], expected[1], "out_gamma")
        ref.assert_bits_equal(out_beta, expected[2], "out_beta")
        assert np.all(out_gamma[1::2] == ref.SENTINEL)


def readonly(array):
    array = array.copy()
    array.flags.writeable = False
    return array


@needs_versioned_numpy
@pytest.mark.parametrize("name", KERNELS)
def test_read_only_versioned_tensor_is_an_input_but_not_an_output(name):
    kernel = make_kernel(name)
    arrays = inputs_for(name)
    expected = kernel(*arrays)
    assert_same_results(kernel(*[DLPackOnly(readonly(a)) for a in arrays]), expected, name)
    out = readonly(np.full(SHAPE, ref.SENTINEL, np.float32))
    with pytest.raises(ValueError, match=f"{name}: out is read-only"):
        kernel(*arrays, out=DLPackOnly(out))
    assert np.all(out == ref.SENTINEL)


@needs_versioned_numpy
def test_read_only_vector_output_is_refused():
    kernel = make_kernel("InstanceNormalizationGradient")
    arrays = inputs_for("InstanceNormalizationGradient")
    out_beta = readonly(np.zeros(CHANNELS, np.float32))
    with pytest.raises(ValueError, match="InstanceNormalizationGradient: out_beta is read-only"):
        kernel(*arrays, out_beta=DLPackOnly(out_beta))


def test_legacy_producer_refusing_a_read_only_export_gives_a_value_error():
    # NumPy will not export a read-only array as a legacy capsule (no flag to say so).
    kernel = make_kernel("LocalContrastNormalization")
    (x,) = inputs_for("LocalContrastNormalization")
    with pytest.raises(ValueError, match=r"LocalContrastNormalization: x \(test_dlpack\."
                                         r"LegacyDLPack\) cannot be exported through DLPack"):
        kernel(LegacyDLPack(readonly(x)))


@pytest.mark.parametrize("device,label", [((2, 0), "cuda:0"), ((8, 1), "metal:1"),
                                          ((10, 3), "rocm:3 (DLPack device type 10)"),
                                          ((99, 0), "unknown:0 (DLPack device type 99)")])
@pytest.mark.parametrize("slot", ["x", "out"])
def test_tensors_on_other_devices_are_refused_by_name(device, label, slot):
    kernel = make_kernel("LocalContrastNormalization")
    (x,) = inputs_for("LocalContrastNormalization")
    out = np.full(SHAPE, ref.SENTINEL, np.float32)
    args = {"x": (OnDevice(x, device),), "out": (x,)}[slot]
    kwargs = {"out": OnDevice(out, device)} if slot == "out" else {}
    with pytest.raises(ValueError) as info:
        kernel(*args, **kwargs)
    message = str(info.value)
    assert message.startswith(f"LocalContrastNormalization: {slot} (test_dlpack.OnDevice) is on "
                              f"device {label}"), message
    assert "CPU" in message
    assert np.all(out == ref.SENTINEL)


def test_bad_dlpack_device_answer_is_a_type_error():
    class Odd(DLPackOnly):
        def __dlpack_device__(self):
            return "cpu"

    (x,) = inputs_for("LocalContrastNormalization")
    with pytest.raises(TypeError, match=r"x.__dlpack_device__\(\) must return"):
        make_kernel("LocalContrastNormalization")(Odd(x))


@pytest.mark.parametrize("dtype,label", [(np.int32, "int32"), (np.uint8, "uint8"),
                                         (np.bool_, "bool"), (np.complex64, "complex64")])
@pytest.mark.parametrize("producer", sorted(PRODUCERS))
def test_dlpack_dtypes_mpsnorm_cannot_take(dtype, label, producer):
    kernel = make_kernel("LocalContrastNormalization")
    x = np.zeros(SHAPE, dtype)
    with pytest.raises(TypeError, match=f"LocalContrastNormalization: x has unsupported dtype "
                                        f"{label}; expected float32, float16 or float64"):
        kernel(PRODUCERS[producer](x))


@pytest.mark.parametrize("shape", [(5,), (2, 3), (1, 2, 3, 4, 5)])
def test_dlpack_rank_is_checked(shape):
    kernel = make_kernel("LocalContrastNormalization")
    with pytest.raises(ValueError, match=rf"got {len(shape)}-D with shape {shape}".replace(
            "(", r"\(").replace(")", r"\)")):
        kernel(DLPackOnly(np.zeros(shape, np.float32)))


def test_dlpack_shape_and_dtype_must_match():
    kernel = make_kernel("LocalContrastNormalizationGradient")
    dy, x = inputs_for("LocalContrastNormalizationGradient")
    with pytest.raises(ValueError, match=r"dy has shape \(2, 3, 7, 8\) but x has shape"):
        kernel(DLPackOnly(dy[..., :8]), DLPackOnly(x))
    with pytest.raises(ValueError, match="out has dtype float64 but x has dtype float32"):
        kernel(dy, x, out=DLPackOnly(np.zeros(SHAPE)))


def test_dlpack_output_overlapping_an_input_is_refused():
    kernel = make_kernel("LocalContrastNormalization")
    (x,) = inputs_for("LocalContrastNormalization")
    before = x.copy()
    with pytest.raises(ValueError, match="LocalContrastNormalization"):
        kernel(x, out=DLPackOnly(x))
    ref.assert_bits_equal(x, before, "x")


def test_refused_export_is_a_value_error_naming_the_reason():
    (x,) = inputs_for("LocalContrastNormalization")
    with pytest.raises(ValueError, match=r"x \(test_dlpack.Refusing\) cannot be exported "
                                         r"through DLPack: this tensor cannot be exported"):
        make_kernel("LocalContrastNormalization")(Refusing(x))


def test_a_used_capsule_is_refused():
    kernel = make_kernel("LocalContrastNormalization")
    (x,) = inputs_for("LocalContrastNormalization")
    producer = SameCapsuleTwice(x)
    kernel(producer)
    with pytest.raises(TypeError, match="not an unused DLPack capsule"):
        kernel(producer)


def test_neither_buffer_nor_dlpack_is_a_type_error():
    with pytest.raises(TypeError, match="LocalContrastNormalization: x must support the buffer "
                                        "protocol or DLPack .* got list"):
        make_kernel("LocalContrastNormalization")([[[[1.0]]]])


@pytest.mark.parametrize("producer", sorted(PRODUCERS))
def test_managed_tensors_are_released_after_every_call(producer):
    """NumPy's DLPack deleter drops its reference to the array: the reference count
    comes back once mpsnorm has called it, after a success and after each error."""
    kernel = make_kernel("LocalContrastNormalizationGradient")
    dy, x = inputs_for("LocalContrastNormalizationGradient")
    out = np.zeros(SHAPE, np.float32)
    wrapped = [PRODUCERS[producer](a) for a in (dy, x, out)]
    gc.collect()
    counts = [sys.getrefcount(a) for a in (dy, x, out)]
    kernel(wrapped[0], wrapped[1], out=wrapped[2])
    with pytest.raises(ValueError):  # out overlaps x: refused after all three are held
        kernel(wrapped[0], wrapped[1], out=PRODUCERS[producer](x))
    with pytest.raises(ValueError):  # rank error after the export
        kernel(PRODUCERS[producer](dy[0, 0]), wrapped[1])
    with pytest.raises(ValueError):  # shape mismatch between two held tensors
        kernel(wrapped[0], PRODUCERS[producer](x[:1]))
    gc.collect()
    assert [sys.getrefcount(a) for a in (dy, x, out)] == counts


def test_dlpack_calls_from_threads_agree():
    kernel = make_kernel("LocalContrastNormalization")
    (x,) = inputs_for("LocalContrastNormalization", shape=(4, 3, 32, 32))
    expected = kernel(x)
    results = [None] * 8

    def work(i):
        out = np.empty_like(x)
        for _ in range(5):
            kernel(DLPackOnly(x), out=DLPackOnly(out))
        results[i] = out

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        ref.assert_bits_equal(r, expected, "threaded result")


# -- PyTorch ---------------------------------------------------------------------------------

def import_torch():
    if os.environ.get("MPSNORM_REQUIRE_TORCH") == "1":
        import torch
        return torch
    return pytest.importorskip("torch", reason="PyTorch is not installed (pip install "
                                               "torch); MPSNORM_REQUIRE_TORCH=1 makes this fail")


TORCH_DTYPES = ["float32", "float16", "float64"]


@pytest.mark.parametrize("dtype", TORCH_DTYPES)
@pytest.mark.parametrize("name", KERNELS)
def test_torch_tensors_give_the_numpy_results(name, dtype):
    torch = import_torch()
    kernel = make_kernel(name)
    arrays = inputs_for(name, dtype=np.dtype(dtype))
    tensors = [torch.from_numpy(a.copy()) for a in arrays]
    assert_same_results(kernel(*tensors), kernel(*arrays), name)


@pytest.mark.parametrize("name", KERNELS)
def test_torch_non_contiguous_tensors(name):
    torch = import_torch()
    kernel = make_kernel(name)
    arrays = inputs_for(name, dtype=np.float64)
    expected = kernel(*arrays)
    # Views with gaps, a storage offset and permuted axes: (N, H, C, W) storage.
    tensors = []
    for a in arrays:
        storage = torch.full((2, 2 * 7 + 1, CHANNELS + 1, 9), float("nan"), dtype=torch.float64)
        view = storage[:, 1::2, 1:, :].permute(0, 2, 1, 3)
        view.copy_(torch.from_numpy(a))
        assert not view.is_contiguous() and view.storage_offset() > 0
        tensors.append(view)
    got = kernel(*tensors)
    assert_same_results(got, kernel(*[t.numpy() for t in tensors]), name)  # same memory
    for g, e in zip(as_tuple(got), as_tuple(expected)):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12 * np.abs(e).max())


def test_torch_nhwc_view_of_channels_last_tensor():
    torch = import_torch()
    kernel = mpsnorm.LocalContrastNormalization(3, alpha=1.0, layout="NHWC")
    x = torch.randn(2, 4, 6, 5).contiguous(memory_format=torch.channels_last)
    nhwc = x.permute(0, 2, 3, 1)  # contiguous (N, H, W, C) memory
    assert nhwc.is_contiguous()
    ref.assert_bits_equal(kernel(nhwc), kernel(nhwc.numpy()), "NHWC")
    nchw = mpsnorm.LocalContrastNormalization(3, alpha=1.0)(x)  # channels_last NCHW strides
    ref.assert_bits_equal(nchw, kernel(nhwc).transpose(0, 3, 1, 2), "channels_last")


def test_torch_expanded_input_with_zero_strides():
    torch = import_torch()
    kernel = make_kernel("LocalContrastNormalizationGradient")
    (x,) = inputs_for("LocalContrastNormalization")
    dy = torch.ones(()).expand(*SHAPE)  # what backward of .sum() hands over
    assert dy.stride() == (0, 0, 0, 0)
    ones = np.broadcast_to(np.float32(1.0), SHAPE)  # the same zero strides in NumPy
    ref.assert_bits_equal(kernel(dy, torch.from_numpy(x)), kernel(ones, x), "expanded dy")


@pytest.mark.parametrize("name", KERNELS)
def test_torch_out_tensors_are_written_in_place(name):
    torch = import_torch()
    kernel = make_kernel(name)
    arrays = inputs_for(name)
    out = torch.full((2, CHANNELS, 9, 7), ref.SENTINEL).transpose(2, 3)  # non-contiguous
    expected = as_tuple(kernel(*arrays, out=np.zeros((2, CHANNELS, 9, 7), np.float32)
                               .transpose(0, 1, 3, 2)))  # the same strides
    pointer = out.data_ptr()
    kwargs = {"out": out}
    if name == "InstanceNormalizationGradient":
        kwargs["out_gamma"] = torch.zeros(CHANNELS)
        kwargs["out_beta"] = torch.zeros(2 * CHANNELS)[::2]
    result = as_tuple(kernel(*[torch.from_numpy(a) for a in arrays], **kwargs))
    assert result[0] is out and out.data_ptr() == pointer
    ref.assert_bits_equal(out.numpy(), expected[0], "out")
    if name == "InstanceNormalizationGradient":
        ref.assert_bits_equal(kwargs["out_gamma"].numpy(), expected[1], "out_gamma")
        ref.assert_bits_equal(kwargs["out_beta"].numpy(), expected[2], "out_beta")


@pytest.mark.parametrize("slot", ["x", "dy", "out"])
def test_torch_tensor_requiring_grad_gets_a_clear_error(slot):
    torch = import_torch()
    kernel = make_kernel("LocalContrastNormalizationGradient")
    tensors = {"dy": torch.randn(*SHAPE), "x": torch.randn(*SHAPE), "out": torch.zeros(*SHAPE)}
    tensors[slot].requires_grad_(True)
    with pytest.raises(ValueError) as info:
        kernel(tensors["dy"], tensors["x"], out=tensors["out"])
    assert str(info.value) == (
        f"LocalContrastNormalizationGradient: {slot} is a torch.Tensor that requires grad, which "
        f"mpsnorm cannot take (DLPack does not export it): pass {slot}.detach(), or use the "
        f"autograd layers of mpsnorm.torch")
    # The advice works, and writes through a detached out reach the original tensor.
    detached = {k: v.detach() for k, v in tensors.items()}
    kernel(detached["dy"], detached["x"], out=detached["out"])
    assert torch.equal(tensors["out"].detach(), detached["out"])
    assert not torch.all(tensors["out"] == 0)


def test_torch_lazily_negated_view_is_refused():
    torch = import_torch()
    negated = torch.randn(*SHAPE, dtype=torch.complex64).conj().imag
    assert negated.is_neg()
    kernel = make_kernel("LocalContrastNormalization")
    with pytest.raises(ValueError, match=r"x is a torch.Tensor with its negative bit set .* "
                                         r"pass x.resolve_neg\(\)"):
        kernel(negated)
    resolved = negated.resolve_neg()
    ref.assert_bits_equal(kernel(resolved), kernel(resolved.numpy()), "resolved")


@pytest.mark.parametrize("dtype,label", [("bfloat16", "bfloat16"), ("int64", "int64"),
                                         ("bool", "bool"), ("complex64", "complex64")])
def test_torch_dtypes_mpsnorm_cannot_take(dtype, label):
    torch = import_torch()
    x = torch.zeros(*SHAPE, dtype=getattr(torch, dtype))
    with pytest.raises(TypeError, match=f"x has unsupported dtype {label}; expected float32"):
        make_kernel("LocalContrastNormalization")(x)


def test_torch_meta_tensor_is_refused_clearly():
    torch = import_torch()
    x = torch.empty(*SHAPE, device="meta")
    with pytest.raises(ValueError, match=r"LocalContrastNormalization: x \(torch.Tensor\)"):
        make_kernel("LocalContrastNormalization")(x)


def test_torch_expanded_out_is_refused():
    torch = import_torch()
    out = torch.zeros(1, 1, 7, 9).expand(*SHAPE)
    with pytest.raises(ValueError, match="LocalContrastNormalization: .*more than once"):
        make_kernel("LocalContrastNormalization")(torch.randn(*SHAPE), out=out)
    assert torch.all(out == 0)


# -- JAX (where installed) -----------------------------------------------------------------

def test_jax_arrays():
    jnp = pytest.importorskip("jax.numpy", reason="JAX is not installed")
    kernel = make_kernel("LocalContrastNormalizationGradient")
    dy, x = inputs_for("LocalContrastNormalizationGradient")
    got = kernel(jnp.asarray(dy), jnp.asarray(x)[:, :, ::-1][:, :, ::-1])
    ref.assert_bits_equal(got, kernel(dy, x), "jax")
    # JAX arrays are immutable: exported with DLPack's read-only flag.
    with pytest.raises(ValueError, match="LocalContrastNormalizationGradient: out is read-only"):
        kernel(dy, x, out=jnp.zeros(SHAPE, jnp.float32))
