# The kernel base class: what both families share (engine, layout, backend properties) and
# the sequence of one call: hold the caller's buffers -> run the C kernel without the GIL ->
# turn its status into an exception -> release the buffers (included by _mpsnorm.pyx).

cdef extern from *:
    """
    /* A vectorcall (PEP 590) handed to the type's tp_call as an argument tuple and keyword
     * dict: tp_call parses and reports arity and keyword errors in one place. */
    static PyObject *mpsnorm_call_through_tp_call(PyObject *callable, PyObject *const *args,
                                                  size_t nargsf, PyObject *kwnames)
    {
        Py_ssize_t nargs = PyVectorcall_NARGS(nargsf), i;
        PyObject *tuple = PyTuple_New(nargs), *keywords = NULL, *result = NULL;
        if (tuple == NULL)
            return NULL;
        for (i = 0; i < nargs; i++) {
            Py_INCREF(args[i]);
            PyTuple_SET_ITEM(tuple, i, args[i]);
        }
        if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0) {
            keywords = PyDict_New();
            for (i = 0; keywords != NULL && i < PyTuple_GET_SIZE(kwnames); i++)
                if (PyDict_SetItem(keywords, PyTuple_GET_ITEM(kwnames, i), args[nargs + i]) < 0)
                    Py_CLEAR(keywords);
            if (keywords == NULL) {
                Py_DECREF(tuple);
                return NULL;
            }
        }
        result = Py_TYPE(callable)->tp_call(callable, tuple, keywords);
        Py_DECREF(tuple);
        Py_XDECREF(keywords);
        return result;
    }

    /* Instances of `type` are called through the vectorcall function stored `offset`
     * bytes into them. */
    static void mpsnorm_enable_vectorcall(PyTypeObject *type, Py_ssize_t offset)
    {
        type->tp_vectorcall_offset = offset;
        type->tp_flags |= Py_TPFLAGS_HAVE_VECTORCALL;
    }
    """
    object call_through_tp_call "mpsnorm_call_through_tp_call"(
        object callable, PyObject **args, size_t nargsf, PyObject *kwnames)
    void enable_vectorcall_at "mpsnorm_enable_vectorcall"(PyTypeObject *type, Py_ssize_t offset)
    Py_ssize_t PyVectorcall_NARGS(size_t nargsf)


# Everything one call holds: the caller's buffers, the parameters as they were when the call
# started, and the C report.
cdef struct KernelCall:
    HeldTensor dy
    HeldTensor x
    HeldTensor out
    HeldVector dgamma
    HeldVector dbeta
    mpsnorm_lcn_params lcn
    mpsnorm_inorm_params instance_norm
    mpsnorm_report report


cdef inline bint is_gradient(Operation operation) noexcept nogil:
    return operation == LCN_GRADIENT or operation == INSTANCE_NORM_GRADIENT


cdef int run_c_kernel(mpsnorm_engine *engine, Operation operation, KernelCall *call) noexcept nogil:
    if operation == LCN_FORWARD:
        return mpsnorm_lcn_forward(engine, &call.lcn, &call.x.tensor, &call.out.tensor,
                                   &call.report)
    if operation == LCN_GRADIENT:
        return mpsnorm_lcn_gradient(engine, &call.lcn, &call.dy.tensor, &call.x.tensor,
                                    &call.out.tensor, &call.report)
    if operation == INSTANCE_NORM_FORWARD:
        return mpsnorm_inorm_forward(engine, &call.instance_norm, &call.x.tensor,
                                     &call.out.tensor, &call.report)
    return mpsnorm_inorm_gradient(engine, &call.instance_norm, &call.dy.tensor, &call.x.tensor,
                                  &call.out.tensor, &call.dgamma.vector, &call.dbeta.vector,
                                  &call.report)


cdef int raise_call_error(int status, KernelCall *call, bint gradient, str where) except -1:
    """The exception of a failed C call. Tensors that differ in shape or dtype are named with
    their Python shapes (as passed, in the object's layout) rather than the C core's (N, C,
    H, W) ones: inputs first, as the C core checks them."""
    if gradient:
        require_like(&call.x, "x", &call.dy, "dy", where)
    require_like(&call.x, "x", &call.out, "out", where)
    return check_call_status(status, &call.report, where)


cdef class _Kernel:
    """Backend, layout and the call sequence shared by every kernel."""

    cdef void _bind(self, str where, Layout layout, Engine engine) noexcept:
        self._where = where
        self.engine = engine
        self._layout = layout
        self._last_backend = None
        self._vectorcall = <void *>kernel_vectorcall

    cdef Operation _operation(self) noexcept:
        """What the object computes: each kernel class says."""
        return LCN_FORWARD

    cdef object _call(self, object dy, object x, object out, object out_gamma, object out_beta):
        """One call: dy is ignored by a forward kernel, out_gamma / out_beta by all but the
        instance-norm gradient. Returns the output(s)."""
        cdef KernelCall call
        cdef Engine engine = self.engine  # kept alive for the call, whatever __init__ does
        cdef Operation operation = self._operation()
        cdef bint gradient = is_gradient(operation)
        cdef bytes gamma_bytes = None, beta_bytes = None  # what instance_norm points into
        cdef _InstanceNormKernel instance_norm
        cdef int status
        if engine is None:
            raise ValueError(f"{type(self).__name__}: the object was not initialized")
        cdef str where = self._where
        cdef Layout layout = self._layout
        # The parameters as they are now: a concurrent setter changes the next call.
        if operation == LCN_FORWARD or operation == LCN_GRADIENT:
            call.lcn = (<_LocalContrastKernel>self).params
        else:
            instance_norm = <_InstanceNormKernel>self
            gamma_bytes = instance_norm.gamma_bytes
            if operation == INSTANCE_NORM_FORWARD:
                beta_bytes = instance_norm.beta_bytes
            call.instance_norm = channel_params(instance_norm.num_channels_value,
                                                instance_norm.epsilon_value, gamma_bytes,
                                                beta_bytes)
        call.dy.held = call.x.held = call.out.held = call.dgamma.held = call.dbeta.held = False
        try:
            if gradient:
                hold_tensor(&call.dy, dy, "dy", where, layout, False)
            hold_tensor(&call.x, x, "x", where, layout, False)
            # Ranks are the Python view's alone (the C core sees (N, C, H, W)).
            if gradient and call.dy.ndim != call.x.ndim:
                require_like(&call.x, "x", &call.dy, "dy", where)
            result = new_array_like(&call.x, where) if out is None else out
            hold_tensor(&call.out, result, "out", where, layout, True)
            if call.out.ndim != call.x.ndim:
                require_like(&call.x, "x", &call.out, "out", where)
            if operation == INSTANCE_NORM_GRADIENT:
                channels = call.x.tensor.shape[1]
                vector_dtype = (MPSNORM_FLOAT64 if call.x.tensor.dtype == MPSNORM_FLOAT64
                                else MPSNORM_FLOAT32)
                if out_gamma is None:
                    out_gamma = new_vector(channels, vector_dtype, where)
                if out_beta is None:
                    out_beta = new_vector(channels, vector_dtype, where)
                hold_vector(&call.dgamma, out_gamma, "out_gamma", where)
                hold_vector(&call.dbeta, out_beta, "out_beta", where)
            with nogil:
                status = run_c_kernel(engine.ptr, operation, &call)
            if status != MPSNORM_OK:
                raise_call_error(status, &call, gradient, where)
            self._last_backend = backend_name(call.report.backend_used)
            self._last_staging_seconds = call.report.staging_seconds
            self._last_gpu_seconds = call.report.gpu_seconds
            if call.report.message[0] != 0:
                warn_notice(&call.report, where)
            if operation == INSTANCE_NORM_GRADIENT:
                return result, out_gamma, out_beta
            return result
        finally:
            release_vector(&call.dbeta)
            release_vector(&call.dgamma)
            release_tensor(&call.out)
            release_tensor(&call.x)
            release_tensor(&call.dy)

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
        """The backend that ran the latest call (a Metal object runs what MPS cannot do on
        the CPU); None before the first call."""
        return self._last_backend

    @property
    def last_metal_seconds(self):
        """Where the latest call's time went when Metal ran it: {"staging": seconds the CPU
        packed the tensors into MPS's texel layout and out of it, "gpu": seconds the GPU ran
        its command buffers (0.0 where Metal does not say, before macOS 10.15)}; None when
        the CPU ran it, or before the first call."""
        if self._last_backend != "metal":
            return None
        return {"staging": self._last_staging_seconds, "gpu": self._last_gpu_seconds}


# The keywords each operation's call takes after its inputs.
cdef tuple FORWARD_KEYWORDS = ("out",)
cdef tuple INSTANCE_NORM_GRADIENT_KEYWORDS = ("out", "out_gamma", "out_beta")


cdef object kernel_vectorcall(object callable, PyObject **args, size_t nargsf, PyObject *kwnames):
    """A kernel call through vectorcall: its inputs positional, its outputs by keyword.
    Anything else (a wrong count, an unknown or repeated keyword) goes to tp_call, whose
    messages say what is wrong."""
    cdef _Kernel kernel = <_Kernel>callable
    cdef Operation operation = kernel._operation()
    cdef Py_ssize_t inputs = 2 if is_gradient(operation) else 1
    cdef Py_ssize_t nargs = PyVectorcall_NARGS(nargsf)
    cdef Py_ssize_t i, k, keywords = 0
    cdef tuple names = (INSTANCE_NORM_GRADIENT_KEYWORDS if operation == INSTANCE_NORM_GRADIENT
                        else FORWARD_KEYWORDS)
    cdef PyObject *given[3]
    given[0] = given[1] = given[2] = NULL
    if kwnames != NULL:
        keywords = PyTuple_GET_SIZE(<object>kwnames)
    if nargs != inputs or keywords > len(names):
        return call_through_tp_call(callable, args, nargsf, kwnames)
    for i in range(keywords):
        name = <object>PyTuple_GET_ITEM(<object>kwnames, i)
        for k in range(len(names)):
            if name is names[k] or name == names[k]:
                break
        else:
            return call_through_tp_call(callable, args, nargsf, kwnames)
        if given[k] != NULL:
            return call_through_tp_call(callable, args, nargsf, kwnames)
        given[k] = args[nargs + i]
    out = <object>given[0] if given[0] != NULL else None
    out_gamma = <object>given[1] if given[1] != NULL else None
    out_beta = <object>given[2] if given[2] != NULL else None
    if inputs == 2:
        return kernel._call(<object>args[0], <object>args[1], out, out_gamma, out_beta)
    return kernel._call(None, <object>args[0], out, None, None)


cdef int enable_vectorcall(tuple types) except -1:
    """Calls of instances of the given kernel types go through kernel_vectorcall."""
    cdef _Kernel probe
    cdef Py_ssize_t offset
    for kernel_type in types:
        probe = kernel_type.__new__(kernel_type)
        offset = <char *>&probe._vectorcall - <char *><PyObject *>probe
        enable_vectorcall_at(<PyTypeObject *>kernel_type, offset)
    return 0
