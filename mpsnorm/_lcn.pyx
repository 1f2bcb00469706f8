# cython: language_level=3, auto_pickle=False
"""Local contrast normalization (MPSCNNLocalContrastNormalization) and its
gradient (MPSCNNLocalContrastNormalizationGradient) as Python objects."""
from mpsnorm._backend cimport Engine, backend_name, create_engine
from mpsnorm._parameters cimport to_float32, to_int64
from mpsnorm._status cimport check_call_status, check_status
from mpsnorm._tensor cimport *
from mpsnorm.libmpsnorm cimport *


cdef class _LocalContrastKernel:
    """Parameters, backend and layout shared by the forward and gradient kernels."""

    def __init__(self, kernel_width, kernel_height=None, *, alpha=0.0, beta=0.5,
                 delta=1.0 / 1024.0, p0=1.0, pm=0.0, ps=1.0, layout="NCHW", backend="auto"):
        where = type(self).__name__
        cdef mpsnorm_lcn_params params
        cdef mpsnorm_report report
        if kernel_height is None:
            kernel_height = kernel_width
        mpsnorm_lcn_params_init(&params, to_int64(kernel_width, "kernel_width", where),
                                to_int64(kernel_height, "kernel_height", where))
        params.alpha = to_float32(alpha, "alpha", where)
        params.beta = to_float32(beta, "beta", where)
        params.delta = to_float32(delta, "delta", where)
        params.p0 = to_float32(p0, "p0", where)
        params.pm = to_float32(pm, "pm", where)
        params.ps = to_float32(ps, "ps", where)
        check_status(mpsnorm_lcn_params_check(&params, &report), &report, where)
        cdef Layout parsed_layout = parse_layout(layout, where)
        cdef Engine engine = create_engine(backend, where)
        # Nothing can fail past this point: a failed (re-)__init__ changes nothing.
        self._where = where
        self.engine = engine
        self.params = params
        self._layout = parsed_layout
        self._last_backend = None

    cdef int _require_engine(self) except -1:
        if self.engine is None:
            raise ValueError(f"{type(self).__name__}: the object was not initialized")
        return 0

    cdef int _set(self, str name, object value) except -1:
        cdef mpsnorm_lcn_params candidate = self.params
        cdef mpsnorm_report report
        where = type(self).__name__
        cdef float number = to_float32(value, name, where)
        if name == "alpha":
            candidate.alpha = number
        elif name == "beta":
            candidate.beta = number
        elif name == "delta":
            candidate.delta = number
        elif name == "p0":
            candidate.p0 = number
        elif name == "pm":
            candidate.pm = number
        else:
            candidate.ps = number
        check_status(mpsnorm_lcn_params_check(&candidate, &report), &report, where)
        self.params = candidate
        return 0

    @property
    def kernel_width(self):
        return self.params.kernel_width

    @property
    def kernel_height(self):
        return self.params.kernel_height

    @property
    def layout(self):
        return layout_name(self._layout)

    @property
    def backend(self):
        """The backend this object runs on ("cpu" or "metal")."""
        return backend_name(mpsnorm_engine_backend(
            self.engine.ptr if self.engine is not None else NULL))

    @property
    def last_backend(self):
        """The backend that ran the latest call (a Metal object runs what MPS
        cannot do on the CPU); None before the first call."""
        return self._last_backend

    @property
    def alpha(self):
        return self.params.alpha

    @alpha.setter
    def alpha(self, value):
        self._set("alpha", value)

    @property
    def beta(self):
        return self.params.beta

    @beta.setter
    def beta(self, value):
        self._set("beta", value)

    @property
    def delta(self):
        return self.params.delta

    @delta.setter
    def delta(self, value):
        self._set("delta", value)

    @property
    def p0(self):
        return self.params.p0

    @p0.setter
    def p0(self, value):
        self._set("p0", value)

    @property
    def pm(self):
        return self.params.pm

    @pm.setter
    def pm(self, value):
        self._set("pm", value)

    @property
    def ps(self):
        return self.params.ps

    @ps.setter
    def ps(self, value):
        self._set("ps", value)

    def __repr__(self):
        p = self.params
        return (f"{type(self).__name__}({p.kernel_width}, {p.kernel_height}, alpha={p.alpha!r}, "
                f"beta={p.beta!r}, delta={p.delta!r}, p0={p.p0!r}, pm={p.pm!r}, ps={p.ps!r}, "
                f"layout={self.layout!r}, backend={self.backend!r})")


cdef class LocalContrastNormalization(_LocalContrastKernel):
    """y = pm + ps * (x - p0 * mean) * (delta + alpha * variance) ** -beta over a
    kernel_width x kernel_height window, zero outside the image (MPS's
    MPSCNNLocalContrastNormalization, with its defaults)."""

    def __call__(self, x, *, out=None):
        cdef HeldTensor held_x, held_out
        cdef mpsnorm_lcn_params params = self.params
        cdef mpsnorm_report report
        cdef int status
        self._require_engine()
        cdef str where = self._where
        cdef Engine engine = self.engine  # kept alive for the call, whatever __init__ does
        held_x.held = held_out.held = False
        try:
            hold_tensor(&held_x, x, "x", where, self._layout, False)
            result = hold_output(&held_out, out, &held_x, where, self._layout)
            with nogil:
                status = mpsnorm_lcn_forward(engine.ptr, &params, &held_x.tensor,
                                             &held_out.tensor, &report)
            check_call_status(status, &report, where)
            self._last_backend = backend_name(report.backend_used)
            return result
        finally:
            release_tensor(&held_out)
            release_tensor(&held_x)


cdef class LocalContrastNormalizationGradient(_LocalContrastKernel):
    """dx, the exact gradient of LocalContrastNormalization at x applied to dy
    (MPS's MPSCNNLocalContrastNormalizationGradient)."""

    def __call__(self, dy, x, *, out=None):
        cdef HeldTensor held_dy, held_x, held_out
        cdef mpsnorm_lcn_params params = self.params
        cdef mpsnorm_report report
        cdef int status
        self._require_engine()
        cdef str where = self._where
        cdef Engine engine = self.engine  # kept alive for the call, whatever __init__ does
        held_dy.held = held_x.held = held_out.held = False
        try:
            hold_input_pair(&held_dy, dy, &held_x, x, where, self._layout)
            result = hold_output(&held_out, out, &held_x, where, self._layout)
            with nogil:
                status = mpsnorm_lcn_gradient(engine.ptr, &params, &held_dy.tensor,
                                              &held_x.tensor, &held_out.tensor, &report)
            check_call_status(status, &report, where)
            self._last_backend = backend_name(report.backend_used)
            return result
        finally:
            release_tensor(&held_out)
            release_tensor(&held_x)
            release_tensor(&held_dy)
