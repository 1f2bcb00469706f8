# cython: language_level=3, auto_pickle=False
"""Instance normalization (MPSCNNInstanceNormalization) and its gradient
(MPSCNNInstanceNormalizationGradient) as Python objects."""
import array

from mpsnorm._backend cimport Engine, backend_name, create_engine
from mpsnorm._parameters cimport to_float32, to_float32_bytes, to_int64
from mpsnorm._status cimport check_call_status, check_status
from mpsnorm._tensor cimport *
from mpsnorm.libmpsnorm cimport *


cdef mpsnorm_inorm_params channel_params(int64_t count, float epsilon, bytes gamma_bytes,
                                          bytes beta_bytes):
    """The C parameters pointing into the given (caller-held) float32 bytes."""
    cdef mpsnorm_inorm_params params
    params.num_channels = count
    params.epsilon = epsilon
    params.gamma = <const float *><const char *>gamma_bytes if gamma_bytes is not None else NULL
    params.beta = <const float *><const char *>beta_bytes if beta_bytes is not None else NULL
    return params


cdef class _InstanceNormKernel:
    """Channel count, gamma, beta, epsilon, backend and layout."""

    cdef int _setup(self, num_channels, gamma, beta, epsilon, layout, backend) except -1:
        where = type(self).__name__
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
        self._where = where
        self.engine = engine
        self.num_channels_value = count
        self.epsilon_value = params.epsilon
        self.gamma_bytes = gamma_bytes
        self.beta_bytes = beta_bytes
        self._layout = parsed_layout
        self._last_backend = None
        return 0

    cdef bytes _channel_values(self, values, str name, int64_t count):
        if values is None:
            return None
        return to_float32_bytes(values, count, name, type(self).__name__)

    cdef int _require_engine(self) except -1:
        if self.engine is None:
            raise ValueError(f"{type(self).__name__}: the object was not initialized")
        return 0

    cdef mpsnorm_inorm_params _params(self, bytes gamma_bytes, bytes beta_bytes):
        """The C parameters of this object pointing into the given (caller-held) bytes."""
        return channel_params(self.num_channels_value, self.epsilon_value, gamma_bytes,
                              beta_bytes)

    cdef int _check_and_store(self, bytes gamma_bytes, bytes beta_bytes, float epsilon) except -1:
        cdef mpsnorm_report report
        cdef mpsnorm_inorm_params params = self._params(gamma_bytes, beta_bytes)
        params.epsilon = epsilon
        check_status(mpsnorm_inorm_params_check(&params, &report), &report, type(self).__name__)
        self.gamma_bytes = gamma_bytes
        self.beta_bytes = beta_bytes
        self.epsilon_value = epsilon
        return 0

    cdef object _as_array(self, bytes values, float default, str name):
        if values is None:
            try:
                return array.array("f", [default]) * self.num_channels_value
            except MemoryError:
                raise MemoryError(f"{type(self).__name__}: cannot allocate {name} for "
                                  f"{self.num_channels_value} channels") from None
        result = array.array("f")
        result.frombytes(values)
        return result

    @property
    def num_channels(self):
        return self.num_channels_value

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
        """The backend that ran the latest call; None before the first call."""
        return self._last_backend

    @property
    def epsilon(self):
        return self.epsilon_value

    @epsilon.setter
    def epsilon(self, value):
        self._check_and_store(self.gamma_bytes, self.beta_bytes,
                              to_float32(value, "epsilon", type(self).__name__))

    @property
    def gamma(self):
        """Per-channel scale, float32 (a copy: assign to change it; None resets to ones)."""
        return self._as_array(self.gamma_bytes, 1.0, "gamma")

    @gamma.setter
    def gamma(self, values):
        self._check_and_store(self._channel_values(values, "gamma", self.num_channels_value),
                              self.beta_bytes, self.epsilon_value)


cdef class InstanceNormalization(_InstanceNormKernel):
    """y = gamma[c] * (x - mean) / sqrt(var + epsilon) + beta[c] per image and
    channel (MPS's MPSCNNInstanceNormalization)."""

    def __init__(self, num_channels, *, gamma=None, beta=None, epsilon=1e-5, layout="NCHW",
                 backend="auto"):
        self._setup(num_channels, gamma, beta, epsilon, layout, backend)

    @property
    def beta(self):
        """Per-channel shift, float32 (a copy: assign to change it; None resets to zeros)."""
        return self._as_array(self.beta_bytes, 0.0, "beta")

    @beta.setter
    def beta(self, values):
        self._check_and_store(self.gamma_bytes,
                              self._channel_values(values, "beta", self.num_channels_value),
                              self.epsilon_value)

    def __repr__(self):
        return (f"InstanceNormalization({self.num_channels_value}, epsilon={self.epsilon_value!r}, "
                f"layout={self.layout!r}, backend={self.backend!r})")

    def __call__(self, x, *, out=None):
        cdef HeldTensor held_x, held_out
        cdef bytes gamma_bytes = self.gamma_bytes
        cdef bytes beta_bytes = self.beta_bytes
        cdef mpsnorm_inorm_params params = self._params(gamma_bytes, beta_bytes)
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
                status = mpsnorm_inorm_forward(engine.ptr, &params, &held_x.tensor,
                                               &held_out.tensor, &report)
            check_call_status(status, &report, where)
            self._last_backend = backend_name(report.backend_used)
            return result
        finally:
            release_tensor(&held_out)
            release_tensor(&held_x)


cdef class InstanceNormalizationGradient(_InstanceNormKernel):
    """dx, dgamma, dbeta: the gradient of InstanceNormalization at x applied to
    dy, gamma/beta gradients summed over the batch (MPS's
    MPSCNNInstanceNormalizationGradient)."""

    def __init__(self, num_channels, *, gamma=None, epsilon=1e-5, layout="NCHW",
                 backend="auto"):
        self._setup(num_channels, gamma, None, epsilon, layout, backend)

    def __repr__(self):
        return (f"InstanceNormalizationGradient({self.num_channels_value}, "
                f"epsilon={self.epsilon_value!r}, layout={self.layout!r}, "
                f"backend={self.backend!r})")

    def __call__(self, dy, x, *, out=None, out_gamma=None, out_beta=None):
        cdef HeldTensor held_dy, held_x, held_out
        cdef HeldVector held_gamma, held_beta
        cdef int vector_dtype
        cdef int64_t channels
        cdef bytes gamma_bytes = self.gamma_bytes
        cdef mpsnorm_inorm_params params = self._params(gamma_bytes, None)
        cdef mpsnorm_report report
        cdef int status
        self._require_engine()
        cdef str where = self._where
        cdef Engine engine = self.engine  # kept alive for the call, whatever __init__ does
        held_dy.held = held_x.held = held_out.held = held_gamma.held = held_beta.held = False
        try:
            hold_input_pair(&held_dy, dy, &held_x, x, where, self._layout)
            result = hold_output(&held_out, out, &held_x, where, self._layout)
            vector_dtype = MPSNORM_FLOAT64 if held_x.tensor.dtype == MPSNORM_FLOAT64 else MPSNORM_FLOAT32
            channels = held_x.tensor.shape[1]
            dgamma = new_vector(channels, vector_dtype, where) if out_gamma is None else out_gamma
            dbeta = new_vector(channels, vector_dtype, where) if out_beta is None else out_beta
            hold_vector(&held_gamma, dgamma, "out_gamma", where)
            hold_vector(&held_beta, dbeta, "out_beta", where)
            with nogil:
                status = mpsnorm_inorm_gradient(engine.ptr, &params, &held_dy.tensor,
                                                &held_x.tensor, &held_out.tensor,
                                                &held_gamma.vector, &held_beta.vector, &report)
            check_call_status(status, &report, where)
            self._last_backend = backend_name(report.backend_used)
            return result, dgamma, dbeta
        finally:
            release_vector(&held_beta)
            release_vector(&held_gamma)
            release_tensor(&held_out)
            release_tensor(&held_x)
            release_tensor(&held_dy)
