# Local contrast normalization (MPSCNNLocalContrastNormalization) and its gradient
# (MPSCNNLocalContrastNormalizationGradient) as Python objects (included by _mpsnorm.pyx).

# The float32 parameters of mpsnorm_lcn_params, in the order lcn_value() numbers them.
cdef tuple LCN_VALUES = ("alpha", "beta", "delta", "p0", "pm", "ps")


cdef float *lcn_value(mpsnorm_lcn_params *params, Py_ssize_t index) noexcept:
    if index == 0:
        return &params.alpha
    if index == 1:
        return &params.beta
    if index == 2:
        return &params.delta
    if index == 3:
        return &params.p0
    if index == 4:
        return &params.pm
    return &params.ps


cdef object lcn_value_property(Py_ssize_t index):
    """The property of one float32 parameter: read from the C parameters; a new value is
    rounded to float32 and checked by the C core before it replaces the old one."""
    name = LCN_VALUES[index]

    def get(_LocalContrastKernel self):
        return lcn_value(&self.params, index)[0]

    def set(_LocalContrastKernel self, value):
        cdef mpsnorm_lcn_params candidate = self.params
        cdef mpsnorm_report report
        where = type(self).__name__
        lcn_value(&candidate, index)[0] = to_float32(value, name, where)
        check_status(mpsnorm_lcn_params_check(&candidate, &report), &report, where)
        self.params = candidate

    return property(get, set)


cdef class _LocalContrastKernel(_Kernel):
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
        for index, value in enumerate((alpha, beta, delta, p0, pm, ps)):
            lcn_value(&params, index)[0] = to_float32(value, LCN_VALUES[index], where)
        check_status(mpsnorm_lcn_params_check(&params, &report), &report, where)
        cdef Layout parsed_layout = parse_layout(layout, where)
        cdef Engine engine = create_engine(backend, where)
        # Nothing can fail past this point: a failed (re-)__init__ changes nothing.
        self.params = params
        self._bind(where, parsed_layout, engine)

    @property
    def kernel_width(self):
        return self.params.kernel_width

    @property
    def kernel_height(self):
        return self.params.kernel_height

    alpha = lcn_value_property(0)
    beta = lcn_value_property(1)
    delta = lcn_value_property(2)
    p0 = lcn_value_property(3)
    pm = lcn_value_property(4)
    ps = lcn_value_property(5)

    def __repr__(self):
        p = self.params
        return (f"{type(self).__name__}({p.kernel_width}, {p.kernel_height}, alpha={p.alpha!r}, "
                f"beta={p.beta!r}, delta={p.delta!r}, p0={p.p0!r}, pm={p.pm!r}, ps={p.ps!r}, "
                f"layout={self.layout!r}, backend={self.backend!r})")


cdef class LocalContrastNormalization(_LocalContrastKernel):
    """y = pm + ps * (x - p0 * mean) * (delta + alpha * variance) ** -beta over a
    kernel_width x kernel_height window, zero outside the image (MPS's
    MPSCNNLocalContrastNormalization, with its defaults)."""

    cdef Operation _operation(self) noexcept:
        return LCN_FORWARD

    def __call__(self, x, *, out=None):
        return self._call(None, x, out, None, None)


cdef class LocalContrastNormalizationGradient(_LocalContrastKernel):
    """dx, the exact gradient of LocalContrastNormalization at x applied to dy
    (MPS's MPSCNNLocalContrastNormalizationGradient)."""

    cdef Operation _operation(self) noexcept:
        return LCN_GRADIENT

    def __call__(self, dy, x, *, out=None):
        return self._call(dy, x, out, None, None)
