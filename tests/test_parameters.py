"""Kernel parameters: MPS defaults, float32 rounding, read-only attributes, gamma/beta."""

import numpy as np
import pytest

import mpsnorm
import reference as ref
from reference import assert_close, f32, random_array

LCN_CLASSES = [mpsnorm.LocalContrastNormalization, mpsnorm.LocalContrastNormalizationGradient]
INORM_CLASSES = [mpsnorm.InstanceNormalization, mpsnorm.InstanceNormalizationGradient]


def _name(cls):
    return cls.__name__


# -- LCN ---------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", LCN_CLASSES, ids=_name)
def test_lcn_mps_defaults(cls):
    k = cls(3)
    assert k.alpha == 0.0
    assert k.beta == 0.5
    assert k.delta == 1.0 / 1024.0 == 0.0009765625
    assert k.p0 == 1.0
    assert k.pm == 0.0
    assert k.ps == 1.0
    for name in ref.LCN_PARAM_NAMES:
        assert type(getattr(k, name)) is float, name
    assert k.kernel_width == 3 and k.kernel_height == 3
    assert k.layout == "NCHW"
    assert k.backend == "cpu"


@pytest.mark.parametrize("cls", LCN_CLASSES, ids=_name)
def test_lcn_kernel_sizes(cls):
    k = cls(4, 7)
    assert (k.kernel_width, k.kernel_height) == (4, 7)
    k = cls(5, None)
    assert (k.kernel_width, k.kernel_height) == (5, 5)
    k = cls(kernel_width=2, kernel_height=9)
    assert (k.kernel_width, k.kernel_height) == (2, 9)
    k = cls(1, 65535)
    assert (k.kernel_width, k.kernel_height) == (1, 65535)
    assert type(k.kernel_width) is int and type(k.kernel_height) is int


@pytest.mark.parametrize("cls", LCN_CLASSES, ids=_name)
def test_lcn_parameters_are_keyword_only(cls):
    with pytest.raises(TypeError):
        cls(3, 3, 0.5)


VALUES = dict(alpha=0.1, beta=1.0 / 3.0, delta=0.07, p0=0.9, pm=-0.3, ps=2.0 / 3.0)


@pytest.mark.parametrize("cls", LCN_CLASSES, ids=_name)
def test_lcn_float32_rounding_at_construction(cls):
    k = cls(3, **VALUES)
    for name, v in VALUES.items():
        got = getattr(k, name)
        assert type(got) is float
        assert got == float(np.float32(v)), name
        assert got != v, name                      # the values above are not exact in float32


@pytest.mark.parametrize("name", ref.LCN_PARAM_NAMES)
@pytest.mark.parametrize("cls", LCN_CLASSES, ids=_name)
def test_lcn_float32_rounding_on_set(cls, name):
    k = cls(3)
    setattr(k, name, 0.1)
    assert getattr(k, name) == float(np.float32(0.1)) != 0.1
    assert type(getattr(k, name)) is float
    setattr(k, name, 2)                            # an int is a number too
    assert getattr(k, name) == 2.0
    setattr(k, name, np.float64(1e-3))
    assert getattr(k, name) == f32(1e-3)
    setattr(k, name, np.float32(0.25))
    assert getattr(k, name) == 0.25
    setattr(k, name, -1.5)
    assert getattr(k, name) == -1.5
    setattr(k, name, 3.4e38)                       # large but finite in float32
    assert getattr(k, name) == f32(3.4e38)


@pytest.mark.parametrize("attr,value", [("kernel_width", 5), ("kernel_height", 5),
                                        ("layout", "NHWC")])
@pytest.mark.parametrize("cls", LCN_CLASSES, ids=_name)
def test_lcn_read_only_attributes(cls, attr, value):
    k = cls(3, 4)
    before = getattr(k, attr)
    with pytest.raises(AttributeError):
        setattr(k, attr, value)
    assert getattr(k, attr) == before


@pytest.mark.parametrize("cls", LCN_CLASSES + INORM_CLASSES, ids=_name)
def test_layout_and_backend_values(cls):
    arg = 3
    for layout in ("NCHW", "NHWC"):
        for backend in ("auto", "cpu"):
            k = cls(arg, layout=layout, backend=backend)
            assert k.layout == layout
            assert k.backend == "cpu"


def test_lcn_rounded_parameters_are_the_ones_used():
    """A float64 computation uses the float32-rounded parameters, widened."""
    rng = np.random.default_rng(300)
    x = random_array(rng, (2, 3, 7, 9), np.float64)
    dy = random_array(rng, x.shape, np.float64)
    y = mpsnorm.LocalContrastNormalization(3, **VALUES)(x)
    dx = mpsnorm.LocalContrastNormalizationGradient(3, **VALUES)(dy, x)
    exp_y = ref.lcn_forward(x, 3, **VALUES)
    exp_dx = ref.lcn_gradient(dy, x, 3, **VALUES)
    # the same formula with the unrounded values differs by far more than the tolerance ...
    n = 9.0
    M = ref.box_sum(x, 3, 3) / n
    VAR = np.maximum(ref.box_sum(x * x, 3, 3) / n - M * M, 0)
    v = VALUES
    unrounded = v["pm"] + v["ps"] * (x - v["p0"] * M) * (v["delta"] + v["alpha"] * VAR) ** -v["beta"]
    assert ref.max_abs(unrounded - exp_y) > 100 * ref.tol(np.float64) * max(ref.max_abs(exp_y), 1)
    # ... and mpsnorm matches the rounded one
    assert_close(y, exp_y, np.float64, scale_from=(x,))
    assert_close(dx, exp_dx, np.float64, scale_from=(dy,))


@pytest.mark.parametrize("layout", ref.LAYOUTS)
def test_lcn_property_changes_take_effect(layout):
    rng = np.random.default_rng(301)
    x = random_array(rng, ref.layout_shape((2, 3, 7, 9), layout), np.float64)
    dy = random_array(rng, x.shape, np.float64)
    fwd = mpsnorm.LocalContrastNormalization(4, 3, layout=layout)
    grad = mpsnorm.LocalContrastNormalizationGradient(4, 3, layout=layout)
    assert_close(fwd(x), ref.lcn_forward(x, 4, 3, layout=layout), np.float64, scale_from=(x,))
    new = dict(alpha=0.7, beta=0.75, delta=0.05, p0=0.8, pm=0.1, ps=1.3)
    for name, v in new.items():
        setattr(fwd, name, v)
        setattr(grad, name, v)
    assert_close(fwd(x), ref.lcn_forward(x, 4, 3, layout=layout, **new), np.float64,
                 scale_from=(x,))
    assert_close(grad(dy, x), ref.lcn_gradient(dy, x, 4, 3, layout=layout, **new), np.float64,
                 scale_from=(dy,))
    fwd.alpha = 0.0
    grad.alpha = 0.0
    new["alpha"] = 0.0
    assert_close(fwd(x), ref.lcn_forward(x, 4, 3, layout=layout, **new), np.float64,
                 scale_from=(x,))
    assert_close(grad(dy, x), ref.lcn_gradient(dy, x, 4, 3, layout=layout, **new), np.float64,
                 scale_from=(dy,))


# -- instance normalization ------------------------------------------------------------------

@pytest.mark.parametrize("cls", INORM_CLASSES, ids=_name)
def test_inorm_defaults(cls):
    k = cls(4)
    assert k.num_channels == 4 and type(k.num_channels) is int
    assert k.epsilon == f32(1e-5)
    assert type(k.epsilon) is float
    assert list(k.gamma) == [1.0] * 4
    np.testing.assert_array_equal(np.asarray(k.gamma), np.ones(4))
    assert k.layout == "NCHW"
    assert k.backend == "cpu"


def test_inorm_forward_beta_default():
    k = mpsnorm.InstanceNormalization(3)
    assert list(k.beta) == [0.0] * 3
    np.testing.assert_array_equal(np.asarray(k.beta), np.zeros(3))


@pytest.mark.parametrize("cls", INORM_CLASSES, ids=_name)
def test_inorm_epsilon_rounding(cls):
    k = cls(2, epsilon=0.1)
    assert k.epsilon == f32(0.1) != 0.1
    k.epsilon = 1e-3
    assert k.epsilon == f32(1e-3) != 1e-3
    k.epsilon = 0
    assert k.epsilon == 0.0
    k.epsilon = np.float32(0.5)
    assert k.epsilon == 0.5


@pytest.mark.parametrize("cls", INORM_CLASSES, ids=_name)
def test_inorm_gamma_set_get_none(cls):
    vals = [0.1, -1.0 / 3.0, 2.5]
    k = cls(3, gamma=vals)
    assert list(k.gamma) == [f32(v) for v in vals]
    np.testing.assert_array_equal(np.asarray(k.gamma, np.float64),
                                  np.asarray(vals, np.float32).astype(np.float64))
    k.gamma = None
    assert list(k.gamma) == [1.0, 1.0, 1.0]
    k.gamma = np.array([0.7, 0.8, 0.9])
    assert list(k.gamma) == [f32(0.7), f32(0.8), f32(0.9)]
    k.gamma = (1, 2, 3)
    assert list(k.gamma) == [1.0, 2.0, 3.0]
    k2 = cls(3, gamma=None)
    assert list(k2.gamma) == [1.0, 1.0, 1.0]


def test_inorm_beta_set_get_none():
    vals = [0.1, -1.0 / 3.0, 2.5]
    k = mpsnorm.InstanceNormalization(3, beta=vals)
    assert list(k.beta) == [f32(v) for v in vals]
    k.beta = None
    assert list(k.beta) == [0.0, 0.0, 0.0]
    k.beta = np.array([0.7, 0.8, 0.9], np.float32)
    assert list(k.beta) == [f32(0.7), f32(0.8), f32(0.9)]
    k.beta = None
    assert list(k.beta) == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("attr,value", [("num_channels", 5), ("layout", "NHWC")])
@pytest.mark.parametrize("cls", INORM_CLASSES, ids=_name)
def test_inorm_read_only_attributes(cls, attr, value):
    k = cls(3)
    before = getattr(k, attr)
    with pytest.raises(AttributeError):
        setattr(k, attr, value)
    assert getattr(k, attr) == before


def test_inorm_gamma_returned_sequence_does_not_alias_state():
    """Mutating what the getter returned (if mutable) does not change the kernel."""
    k = mpsnorm.InstanceNormalization(2, gamma=[2.0, 3.0])
    g = k.gamma
    try:
        g[0] = 100.0
    except (TypeError, ValueError, AttributeError):
        pass
    x = random_array(np.random.default_rng(302), (1, 2, 3, 4), np.float64)
    assert_close(k(x), ref.inorm_forward(x, [2.0, 3.0]), np.float64, scale_from=(x,))


@pytest.mark.parametrize("layout", ref.LAYOUTS)
def test_inorm_property_changes_take_effect(layout):
    rng = np.random.default_rng(303)
    x = random_array(rng, ref.layout_shape((2, 3, 5, 6), layout), np.float64, -1, 2)
    dy = random_array(rng, x.shape, np.float64)
    fwd = mpsnorm.InstanceNormalization(3, layout=layout)
    grad = mpsnorm.InstanceNormalizationGradient(3, layout=layout)
    assert_close(fwd(x), ref.inorm_forward(x, layout=layout), np.float64, scale_from=(x,))
    g, b, eps = [0.5, -2.0, 1.25], [0.1, 0.2, -0.3], 0.25
    fwd.gamma, fwd.beta, fwd.epsilon = g, b, eps
    grad.gamma, grad.epsilon = g, eps
    assert_close(fwd(x), ref.inorm_forward(x, g, b, eps, layout), np.float64, scale_from=(x,))
    edx, edg, edb = ref.inorm_gradient(dy, x, g, eps, layout)
    dx, dg, db = grad(dy, x)
    assert_close(dx, edx, np.float64, scale_from=(dy,))
    assert_close(dg, edg, np.float64, scale_from=(dy,))
    assert_close(db, edb, np.float64, scale_from=(dy,))
    fwd.gamma = None
    fwd.beta = None
    assert_close(fwd(x), ref.inorm_forward(x, None, None, eps, layout), np.float64,
                 scale_from=(x,))
