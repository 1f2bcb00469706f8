# Instance normalization (MPSCNNInstanceNormalization) and its gradient
# (MPSCNNInstanceNormalizationGradient) as Python objects (included by _mpsnorm.pyx).

cdef mpsnorm_inorm_params channel_params(int64_t count, float epsilon, bytes gamma_bytes,
                                          bytes beta_bytes) noexcept:
    """The C parameters pointing into the given (caller-held) float32 bytes."""
    cdef mpsnorm_inorm_params params
    params.num_channels = count
    params.epsilon = epsilon
    params.gamma = <const float *><const char *>gamma_bytes if gamma_bytes is not None else NULL
    params.beta = <const float *><const char *>beta_bytes if beta_bytes is not None else NULL
    return params


cdef bytes channel_values(_InstanceNormKernel kernel, object values, str name):
    """Per-channel values as float32 bytes; None stays None (the default)."""
    if values is None:
        return None
    return to_float32_bytes(values, kernel.num_channels_value, name, type(kernel).__name__)


cdef int store_channel_params(_InstanceNormKernel kernel, bytes gamma_bytes, bytes beta_bytes,
                              float epsilon) except -1:
    """Replaces gamma, beta and epsilon once the C core accepts them together."""
    cdef mpsnorm_report report
    cdef mpsnorm_inorm_params params = channel_params(kernel.num_channels_value, epsilon,
                                                      gamma_bytes, beta_bytes)
    check_status(mpsnorm_inorm_params_check(&params, &report), &report, type(kernel).__name__)
    kernel.gamma_bytes = gamma_bytes
    kernel.beta_bytes = beta_bytes
    kernel.epsilon_value = epsilon
    return 0


cdef object channel_array(_InstanceNormKernel kernel, bytes values, float default, str name):
    """A float32 array.array copy of per-channel values (`default` for each when None)."""
    import array
    if values is None:
        try:
            return array.array("f", [default]) * kernel.num_channels_value
        except MemoryError:
            raise MemoryError(f"{type(kernel).__name__}: cannot allocate {name} for "
                              f"{kernel.num_channels_value} channels") from None
    result = array.array("f")
    result.frombytes(values)
    return result


cdef int setup_instance_norm(_InstanceNormKernel kernel, object num_channels, object gamma,
                             object beta, object epsilon, object layout,
                             object backend) except -1:
    """__init__ of both instance-norm kernels (the gradient's passes beta=None)."""
    where = type(kernel).__name__
    cdef mpsnorm_report report
    cdef mpsnorm_inorm_params params
    count = to_int64(num_channels, "num_channels", where)
    if count < 1:
        raise ValueError(f"{where}: num_channels must be >= 1, got {num_channels!r}")
    gamma_bytes = None if gamma is None else to_float32_bytes(gamma, count, "gamma", where)
    beta_bytes = None if beta is None else to_float32_bytes(beta, count, "beta", where)
    params = channel_params(count, to_float32(epsilon, "epsilon", where), gamma_bytes,
                            beta_bytes)
    check_status(mpsnorm_inorm_params_check(&params, &report), &report, where)
    cdef Layout parsed_layout = parse_layout(layout, where)
    cdef Engine engine = create_engine(backend, where)
    # Nothing can fail past this point: a failed (re-)__init__ changes nothing.
    kernel.num_channels_value = count
    kernel.epsilon_value = params.epsilon
    kernel.gamma_bytes = gamma_bytes
    kernel.beta_bytes = beta_bytes
    kernel._bind(where, parsed_layout, engine)
    return 0


cdef class _InstanceNormKernel(_Kernel):
    """Channel count, gamma, beta, epsilon, backend and layout."""

    @property
    def num_channels(self):
        return self.num_channels_value

    @property
    def epsilon(self):
        return self.epsilon_value

    @epsilon.setter
    def epsilon(self, value):
        store_channel_params(self, self.gamma_bytes, self.beta_bytes,
                             to_float32(value, "epsilon", type(self).__name__))

    @property
    def gamma(self):
        """Per-channel scale, float32 (a copy: assign to change it; None resets to ones)."""
        return channel_array(self, self.gamma_bytes, 1.0, "gamma")

    @gamma.setter
    def gamma(self, values):
        store_channel_params(self, channel_values(self, values, "gamma"), self.beta_bytes,
                             self.epsilon_value)


cdef class InstanceNormalization(_InstanceNormKernel):
    """y = gamma[c] * (x - mean) / sqrt(var + epsilon) + beta[c] per image and
    channel (MPS's MPSCNNInstanceNormalization)."""

    cdef Operation _operation(self) noexcept:
        return INSTANCE_NORM_FORWARD

    def __init__(self, num_channels, *, gamma=None, beta=None, epsilon=1e-5, layout="NCHW",
                 backend="auto"):
        setup_instance_norm(self, num_channels, gamma, beta, epsilon, layout, backend)

    @property
    def beta(self):
        """Per-channel shift, float32 (a copy: assign to change it; None resets to zeros)."""
        return channel_array(self, self.beta_bytes, 0.0, "beta")

    @beta.setter
    def beta(self, values):
        store_channel_params(self, self.gamma_bytes, channel_values(self, values, "beta"),
                             self.epsilon_value)

    def __repr__(self):
        return (f"InstanceNormalization({self.num_channels_value}, epsilon={self.epsilon_value!r}, "
                f"layout={self.layout!r}, backend={self.backend!r})")

    def __call__(self, x, *, out=None):
        return self._call(None, x, out, None, None)


cdef class InstanceNormalizationGradient(_InstanceNormKernel):
    """dx, dgamma, dbeta: the gradient of InstanceNormalization at x applied to
    dy, gamma/beta gradients summed over the batch (MPS's
    MPSCNNInstanceNormalizationGradient)."""

    cdef Operation _operation(self) noexcept:
        return INSTANCE_NORM_GRADIENT

    def __init__(self, num_channels, *, gamma=None, epsilon=1e-5, layout="NCHW",
                 backend="auto"):
        setup_instance_norm(self, num_channels, gamma, None, epsilon, layout, backend)

    def __repr__(self):
        return (f"InstanceNormalizationGradient({self.num_channels_value}, "
                f"epsilon={self.epsilon_value!r}, layout={self.layout!r}, "
                f"backend={self.backend!r})")

    def __call__(self, dy, x, *, out=None, out_gamma=None, out_beta=None):
        return self._call(dy, x, out, out_gamma, out_beta)
