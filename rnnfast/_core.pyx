"""The compiled kernels of rnnfast: tanh/relu RNN and LSTM forward and BPTT.

Same functions, signatures and return values as ``rnnfast.reference`` (read its
docstring for the contract, which ``rnnfast._checks`` establishes: this module
trusts it and does not validate).

Layout. Inside, everything is time-major and contiguous: the gate buffer
(T, B, G*H), the hidden and cell state slots (T+1, B, H) in training or two
ping-pong slots in inference. So one step is one contiguous (B, width) matrix
and all steps are one matrix for the big GEMMs. The user's arrays (x, out,
dout, dx) may be batch-first: the kernels read and write them row by row, and
gather x into time-major order where a GEMM needs it. (Strided per-step GEMMs
straight on batch-first rows ran 2-3x slower: rows 4 KiB-aligned apart thrash
the cache sets and the TLB.)

Forward: one GEMM projects the inputs of a chunk of steps (all steps in
training); per step one product adds ``h_{t-1} @ Wh`` into the gate rows and
one fused, vectorized elementwise pass (rnnfast/_simd.h) applies bias and
activations. Backward: per step the elementwise gate gradients and
``dh = dG_t @ Wh.T``; then ``dx``, ``dWx``, ``dWh`` are three GEMMs over all
steps. The loops run without the GIL, with denormals flushed to zero
(restored afterwards).
"""
import os
import warnings

import numpy as np

cimport cython
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memcpy, memset

from rnnfast._blas cimport gemm

cnp.import_array()


cdef extern from "_simd.h" nogil:
    const long long RF_PARALLEL_MIN_WORK
    const long long RF_THREADS_MIN_WORK
    const int RF_MC
    const int RF_KC
    int rf_max_threads()
    int rf_simd_cpu_best()
    int rf_simd_use(int path)
    int rf_simd_current()
    void rf_asan_poison(const void* p, size_t n)
    void rf_asan_unpoison(const void* p, size_t n)
    unsigned int rf_denormals_off()
    void rf_denormals_restore(unsigned int old)
    void rf_tanh_array_f(Py_ssize_t n, const float* x, float* y)
    void rf_tanh_array_d(Py_ssize_t n, const double* x, double* y)
    void rf_sigmoid_array_f(Py_ssize_t n, const float* x, float* y)
    void rf_sigmoid_array_d(Py_ssize_t n, const double* x, double* y)
    void rf_rnn_forward_row_f(int n, int relu, const float* a, const float* b, float* h,
                              float* h_out)
    void rf_rnn_forward_row_d(int n, int relu, const double* a, const double* b, double* h,
                              double* h_out)
    void rf_rnn_backward_row_f(int n, int relu, const float* dout, const float* dh_rec,
                               const float* h, float* dpre)
    void rf_rnn_backward_row_d(int n, int relu, const double* dout, const double* dh_rec,
                               const double* h, double* dpre)
    void rf_lstm_forward_row_f(int n, float* gates, const float* b, const float* c_prev,
                               float* c, float* h, float* h_out)
    void rf_lstm_forward_row_d(int n, double* gates, const double* b, const double* c_prev,
                               double* c, double* h, double* h_out)
    void rf_lstm_backward_row_f(int n, float* gates, const float* c, const float* c_prev,
                                const float* dout, const float* dh_rec, float* dc)
    void rf_lstm_backward_row_d(int n, double* gates, const double* c, const double* c_prev,
                                const double* dout, const double* dh_rec, double* dc)
    int rf_packed_size_f(int k, int n)
    int rf_packed_size_d(int k, int n)
    void rf_pack_panels_f(int k, int n, const float* w, int ldw, int transposed, float* wp)
    void rf_pack_panels_d(int k, int n, const double* w, int ldw, int transposed, double* wp)
    void rf_packed_gemm_f(int m, int n, int k, const float* a, int lda, int a_transposed,
                          const float* wp, int accumulate, float* c, int ldc, float* a_packed,
                          int parallel)
    void rf_packed_gemm_d(int m, int n, int k, const double* a, int lda, int a_transposed,
                          const double* wp, int accumulate, double* c, int ldc,
                          double* a_packed, int parallel)
    void rf_add_column_sums_f(Py_ssize_t rows, int n, const float* src, Py_ssize_t ld,
                              float* dst)
    void rf_add_column_sums_d(Py_ssize_t rows, int n, const double* src, Py_ssize_t ld,
                              double* dst)


# Inference projects the inputs chunk by chunk into a reused gate buffer of about this many
# rows (steps x batch), so its memory does not grow with seq_len, and the gates are still in
# cache when their step reads them (64 against 512: medium LSTM 1.08x, large 1.05-1.11x;
# 32: same as 64).
cdef enum:
    CHUNK_ROWS = 64
    # BLAS re-packs Wx at every call: there fewer, larger chunks (float64 large-rnn-fwd
    # 1.09x the twin with 512 rows, 1.00x with 64)
    BLAS_CHUNK_ROWS = 512


# ----------------------------------------------------------------------------- row helpers
# Fused front doors to the C row functions of _simd.h.

cdef inline void rnn_forward_row(int n, bint relu, const floating* a, const floating* b,
                                 floating* h, floating* h_out) noexcept nogil:
    if floating is float:
        rf_rnn_forward_row_f(n, relu, a, b, h, h_out)
    else:
        rf_rnn_forward_row_d(n, relu, a, b, h, h_out)


cdef inline void rnn_backward_row(int n, bint relu, const floating* dout,
                                  const floating* dh_rec, const floating* h,
                                  floating* dpre) noexcept nogil:
    if floating is float:
        rf_rnn_backward_row_f(n, relu, dout, dh_rec, h, dpre)
    else:
        rf_rnn_backward_row_d(n, relu, dout, dh_rec, h, dpre)


cdef inline void lstm_forward_row(int n, floating* gates, const floating* b,
                                  const floating* c_prev, floating* c, floating* h,
                                  floating* h_out) noexcept nogil:
    if floating is float:
        rf_lstm_forward_row_f(n, gates, b, c_prev, c, h, h_out)
    else:
        rf_lstm_forward_row_d(n, gates, b, c_prev, c, h, h_out)


cdef inline void lstm_backward_row(int n, floating* gates, const floating* c,
                                   const floating* c_prev, const floating* dout,
                                   const floating* dh_rec, floating* dc) noexcept nogil:
    if floating is float:
        rf_lstm_backward_row_f(n, gates, c, c_prev, dout, dh_rec, dc)
    else:
        rf_lstm_backward_row_d(n, gates, c, c_prev, dout, dh_rec, dc)


cdef inline void add_column_sums(Py_ssize_t rows, int n, const floating* src, Py_ssize_t ld,
                                 floating* dst) noexcept nogil:
    if floating is float:
        rf_add_column_sums_f(rows, n, src, ld, dst)
    else:
        rf_add_column_sums_d(rows, n, src, ld, dst)


cdef inline void pack_panels(int k, int n, const floating* w, int ldw, bint transposed,
                             floating* wp) noexcept nogil:
    if floating is float:
        rf_pack_panels_f(k, n, w, ldw, transposed, wp)
    else:
        rf_pack_panels_d(k, n, w, ldw, transposed, wp)


cdef inline void packed_gemm(int m, int n, int k, const floating* a, bint a_transposed,
                             const floating* wp, bint accumulate, floating* c,
                             floating* a_scratch, bint parallel) noexcept nogil:
    """c(m, n) (+)= op(a) @ w, w packed; op(a) = a (m, k) or a.T for a (k, m); contiguous.
    parallel: may use OpenMP's threads (if the product is large enough)."""
    cdef int lda = m if a_transposed else k
    if floating is float:
        rf_packed_gemm_f(m, n, k, a, lda, a_transposed, wp, accumulate, c, n, a_scratch,
                         parallel)
    else:
        rf_packed_gemm_d(m, n, k, a, lda, a_transposed, wp, accumulate, c, n, a_scratch,
                         parallel)


cdef inline void step_product(int m, int n, int k, const floating* a, const floating* w,
                              bint w_transposed, const floating* wp, bint accumulate,
                              floating* c, floating* a_scratch, bint parallel) noexcept nogil:
    """The per-step product, all row-major and contiguous:
    c(m, n) (+)= a(m, k) @ op(w), op(w) = w.T (w is (n, k)) if w_transposed else w (k, n).
    With wp (op(w) packed by pack_panels) our register-blocked kernel, else BLAS."""
    if wp != NULL:
        packed_gemm(m, n, k, a, False, wp, accumulate, c, a_scratch, parallel)
    else:
        gemm(False, w_transposed, m, n, k, <floating> 1, a, k, w, k if w_transposed else n,
             <floating> (1 if accumulate else 0), c, n)


# ----------------------------------------------------------------------------- layout helpers

cdef struct Layout:
    # The user's sequence arrays: row (t, b) of x, out, dout, dx starts at
    # (t * step + b * batch) * width.
    int T
    int B
    Py_ssize_t step
    Py_ssize_t batch


cdef inline Layout make_layout(int T, int B, bint batch_first) noexcept nogil:
    cdef Layout lay
    lay.T = T
    lay.B = B
    lay.step = 1 if batch_first else B
    lay.batch = T if batch_first else 1
    return lay


cdef inline Py_ssize_t user_row(Layout lay, int t, int b) noexcept nogil:
    return t * lay.step + b * lay.batch


cdef void copy_state(int B, int H, const floating* src, floating* dst) noexcept nogil:
    """dst (B, H) = src, or zeros when src is NULL (no initial state given)."""
    if src == NULL:
        memset(dst, 0, <size_t> B * H * sizeof(floating))
    else:
        memcpy(dst, src, <size_t> B * H * sizeof(floating))


cdef const floating* steps_time_major(Layout lay, int t0, int n, int width, const floating* a,
                                      floating* buf) noexcept nogil:
    """Rows of steps t0 .. t0+n-1 of a user array as a time-major (n, B, width) matrix:
    ``a`` itself when time-major, else gathered into ``buf``."""
    cdef int s, b
    if lay.step == lay.B:                       # time-major: already contiguous
        return a + <Py_ssize_t> t0 * lay.B * width
    for s in range(n):
        for b in range(lay.B):
            memcpy(buf + (<Py_ssize_t> s * lay.B + b) * width,
                   a + user_row(lay, t0 + s, b) * width, width * sizeof(floating))
    return buf


cdef void scatter_time_major(Layout lay, int width, const floating* src,
                             floating* a) noexcept nogil:
    """The user array ``a`` = the time-major (T, B, width) ``src``, in a's layout."""
    cdef int t, b
    for t in range(lay.T):
        for b in range(lay.B):
            memcpy(a + user_row(lay, t, b) * width,
                   src + (<Py_ssize_t> t * lay.B + b) * width, width * sizeof(floating))


# ----------------------------------------------------------------------------- step rows
# The elementwise pass of one step over batch rows b0 .. b1-1; with several threads the
# rows are shared out (split_rows) in the same way as the products' panels.

cdef void forward_rows(bint lstm, bint relu, Layout lay, int t, int b0, int b1, int H,
                       floating* gates_t, const floating* b, const floating* c_prev,
                       floating* c_next, floating* h_next, floating* out) noexcept nogil:
    cdef int G = (4 if lstm else 1) * H
    cdef int bb
    for bb in range(b0, b1):
        if lstm:
            lstm_forward_row(H, gates_t + bb * G, b, c_prev + bb * H, c_next + bb * H,
                             h_next + bb * H, out + user_row(lay, t, bb) * H)
        else:
            rnn_forward_row(H, relu, gates_t + bb * G, b, h_next + bb * H,
                            out + user_row(lay, t, bb) * H)


cdef void backward_rows(bint lstm, bint relu, Layout lay, int t, int b0, int b1, int H,
                        const floating* dout, const floating* zero_row, const floating* hs,
                        const floating* cs, floating* gates_t, floating* dh_rec,
                        floating* dc) noexcept nogil:
    cdef int B = lay.B
    cdef int G = (4 if lstm else 1) * H
    cdef int bb
    cdef const floating* dout_row
    for bb in range(b0, b1):
        dout_row = zero_row if dout == NULL else dout + user_row(lay, t, bb) * H
        if lstm:
            lstm_backward_row(H, gates_t + bb * G,
                              cs + (<Py_ssize_t> (t + 1) * B + bb) * H,
                              cs + (<Py_ssize_t> t * B + bb) * H,
                              dout_row, dh_rec + bb * H, dc + bb * H)
        else:
            rnn_backward_row(H, relu, dout_row, dh_rec + bb * H,
                             hs + (<Py_ssize_t> (t + 1) * B + bb) * H, gates_t + bb * G)


cdef inline int step_threads(int B, int H, int G, bint* parallel) noexcept nogil:
    """Threads sharing out a step's batch rows (at most one per row), and in ``parallel``
    whether the step's products may use OpenMP's threads: only when the per-step product
    has RF_THREADS_MIN_WORK multiply-adds. All or nothing: after a parallel product the idle
    worker spins for milliseconds, on a core a serial step loop does not use but whose
    load slowed the loop down (medium RNN forward: 1.1-1.6x at 2 threads)."""
    parallel[0] = <long long> B * H * G >= RF_THREADS_MIN_WORK
    return min(rf_max_threads(), B) if parallel[0] else 1


cdef inline bint threads_for_once(long long work) noexcept nogil:
    """Whether a product run once per call (the deferred backward products) may use
    OpenMP's threads: only from 2^25 multiply-adds. Unlike the step products, which follow
    each other while the worker still spins, it finds the worker asleep, and waking it cost
    more than half of such a product saves (small cells at 2 threads: fwd+bwd 1.02-1.06x
    faster with them serial, 0.87-0.93x of their own 1-thread time before)."""
    return work >= (<long long> 1 << 25)


cdef inline int split_rows(int B, int parts, int part) noexcept nogil:
    """First row of part ``part`` of ``parts`` near-equal parts of B rows."""
    return <int> ((<long long> B * part) // parts)


# ----------------------------------------------------------------------------- forward

cdef void forward_loop(bint lstm, bint relu, Layout lay, int D, int H, const floating* x,
                       const floating* h0, const floating* c0, const floating* Wx,
                       const floating* Wh, const floating* b, floating* gates, int chunk,
                       floating* xbuf, floating* hs, floating* cs, int n_slots, floating* out,
                       floating* h_n, floating* c_n, floating* Wp, floating* WxP,
                       floating* a_scratch) noexcept nogil:
    """The forward of both cells.

    gates holds ``chunk`` steps, reused chunk after chunk, or in training (n_slots = T + 1)
    all T steps, the BPTT workspace, filled chunk by chunk;
    hs and cs hold ``n_slots`` (B, H) states: T + 1 in training (h_{-1} .. h_{T-1},
    kept for BPTT), 2 in inference (ping-pong). xbuf: ``chunk`` steps of x when
    batch-first. cs is unused (NULL) for the RNN. Wp, WxP: room for the packed Wh and
    Wx (the products then run in rf_packed_gemm, with a_scratch for chunk * B rows of
    x), or NULL (BLAS).
    """
    cdef int T = lay.T, B = lay.B
    cdef int G = (4 if lstm else 1) * H
    cdef bint parallel
    cdef int threads = step_threads(B, H, G, &parallel)
    cdef int t, t0, s, n, part
    cdef const floating* x_chunk
    cdef floating* gates_chunk
    cdef floating* gates_t
    cdef floating* h_prev
    cdef floating* h_next
    cdef floating* c_prev
    cdef floating* c_next
    if Wp != NULL:
        pack_panels(H, G, Wh, G, False, Wp)
        pack_panels(D, G, Wx, G, False, WxP)
    copy_state(B, H, h0, hs)                                # slot 0: h_{-1}
    if lstm:
        copy_state(B, H, c0, cs)
    t0 = 0
    while t0 < T:                                           # chunk by chunk
        n = min(chunk, T - t0)
        x_chunk = steps_time_major(lay, t0, n, D, x, xbuf)
        gates_chunk = gates + (<Py_ssize_t> t0 * B * G if n_slots == T + 1 else 0)
        # gates_chunk = x_chunk @ Wx, every step of the chunk at once
        step_product(n * B, G, D, x_chunk, Wx, False, WxP, False, gates_chunk, a_scratch,
                     parallel)
        for s in range(n):
            t = t0 + s
            gates_t = gates_chunk + <Py_ssize_t> s * B * G
            h_prev = hs + <Py_ssize_t> (t % n_slots) * B * H
            h_next = hs + <Py_ssize_t> ((t + 1) % n_slots) * B * H
            # gates_t += h_prev @ Wh (also for a zero h_{-1}: 0 * inf is NaN, as in NumPy)
            step_product(B, G, H, h_prev, Wh, False, Wp, True, gates_t, a_scratch, parallel)
            c_prev = c_next = NULL
            if lstm:
                c_prev = cs + <Py_ssize_t> (t % n_slots) * B * H
                c_next = cs + <Py_ssize_t> ((t + 1) % n_slots) * B * H
            if threads > 1:
                for part in prange(threads, num_threads=threads, schedule="static"):
                    forward_rows(lstm, relu, lay, t, split_rows(B, threads, part),
                                 split_rows(B, threads, part + 1), H, gates_t, b, c_prev,
                                 c_next, h_next, out)
            else:
                forward_rows(lstm, relu, lay, t, 0, B, H, gates_t, b, c_prev, c_next, h_next,
                             out)
        t0 += n
    memcpy(h_n, hs + <Py_ssize_t> (T % n_slots) * B * H, <size_t> B * H * sizeof(floating))
    if lstm:
        memcpy(c_n, cs + <Py_ssize_t> (T % n_slots) * B * H, <size_t> B * H * sizeof(floating))


# ----------------------------------------------------------------------------- backward

cdef void backward_loop(bint lstm, bint relu, Layout lay, int D, int H, const floating* dout,
                        const floating* zero_row, const floating* x, const floating* Wx,
                        const floating* Wh, floating* WpT, floating* a_scratch,
                        const floating* hs, const floating* cs, floating* gates,
                        floating* dh_rec, floating* dc, floating* xbuf, floating* dx,
                        floating* dWx, floating* dWh, floating* db, floating* dGp,
                        floating* WxTp, floating* deferred_scratch) noexcept nogil:
    """BPTT of both cells, overwriting the workspace gates with their gradients dG.

    dh_rec (and dc) enter holding dL/dh_{T-1} (dL/dc_{T-1}) from the final state
    and leave holding dh0 (dc0). dout NULL: no gradient on the outputs (zero_row
    stands in). WpT: room for the packed Wh.T (with a_scratch (B, G*H)), or NULL
    (BLAS). xbuf: (T, B, D) scratch when batch-first. dGp, WxTp, deferred_scratch: room
    for the packed dG and Wx.T, for the deferred products in rf_packed_gemm, or NULL (BLAS).
    """
    cdef int T = lay.T, B = lay.B
    cdef int G = (4 if lstm else 1) * H
    cdef bint parallel
    cdef int threads = step_threads(B, H, G, &parallel)
    cdef int t, part
    cdef Py_ssize_t rows = <Py_ssize_t> T * B
    cdef floating* gates_t
    cdef const floating* xs
    cdef floating* dx_tm
    if WpT != NULL:
        pack_panels(G, H, Wh, G, True, WpT)
    for t in range(T - 1, -1, -1):
        gates_t = gates + <Py_ssize_t> t * B * G
        if threads > 1:
            for part in prange(threads, num_threads=threads, schedule="static"):
                backward_rows(lstm, relu, lay, t, split_rows(B, threads, part),
                              split_rows(B, threads, part + 1), H, dout, zero_row, hs, cs,
                              gates_t, dh_rec, dc)
        else:
            backward_rows(lstm, relu, lay, t, 0, B, H, dout, zero_row, hs, cs, gates_t,
                          dh_rec, dc)
        # dh_rec = dG_t @ Wh.T
        step_product(B, H, G, gates_t, Wh, True, WpT, False, dh_rec, a_scratch, parallel)
    # the deferred GEMMs over all steps: dWx = x.T @ dG, dWh = h_prev.T @ dG, dx = dG @ Wx.T
    xs = steps_time_major(lay, 0, T, D, x, xbuf)
    dx_tm = xbuf if xs == xbuf else dx    # batch-first: dx time-major first, then scatter
    if dGp != NULL:
        # our kernel rather than BLAS (BLAS's threads cost more than they bring at these
        # sizes); OpenMP threads when large: these products end the call, no serial step
        # loop follows them (at 2 threads, medium LSTM forward+backward 1.12x faster so)
        pack_panels(<int> rows, G, gates, G, False, dGp)          # dG as the right operand
        packed_gemm(D, G, <int> rows, xs, True, dGp, False, dWx, deferred_scratch,
                    threads_for_once(rows * G * D))
        packed_gemm(H, G, <int> rows, hs, True, dGp, False, dWh, deferred_scratch,
                    threads_for_once(rows * G * H))
        pack_panels(G, D, Wx, G, True, WxTp)                      # Wx.T
        packed_gemm(<int> rows, D, G, gates, False, WxTp, False, dx_tm, deferred_scratch,
                    threads_for_once(rows * G * D))
    else:
        gemm(True, False, D, G, <int> rows, <floating> 1, xs, D, gates, G, <floating> 0,
             dWx, G)
        gemm(True, False, H, G, <int> rows, <floating> 1, hs, H, gates, G, <floating> 0,
             dWh, G)
        gemm(False, True, <int> rows, D, G, <floating> 1, gates, G, Wx, G, <floating> 0,
             dx_tm, D)
    if dx_tm == xbuf:
        scatter_time_major(lay, D, xbuf, dx)
    memset(db, 0, <size_t> G * sizeof(floating))
    add_column_sums(rows, G, gates, G, db)                  # db = dG.sum(axis=0)


# ----------------------------------------------------------------------------- typed entries
# Checked arrays in (rnnfast._checks guarantees dtype and C-contiguity), raw pointers to the
# loops, GIL released. The first argument only selects the float or double specialization.
# Raw data pointers instead of typed memoryviews: acquiring ~15 buffers cost ~6 us a call,
# a third of a tiny forward.

cdef inline void* data(a):
    """The first element of a checked array, or NULL for None (an optional array)."""
    return NULL if a is None else cnp.PyArray_DATA(<cnp.ndarray> a)


cdef enum:
    RED_ZONE = 16       # values between two carved buffers (poisoned in ASan builds)


cdef inline Py_ssize_t carved_values(Py_ssize_t n) noexcept nogil:
    """Values a buffer of n takes in a scratch block: rounded up to 16, then a red zone."""
    return (n + 15) // 16 * 16 + RED_ZONE


cdef inline floating* carve(floating* scratch, Py_ssize_t* used, Py_ssize_t n) noexcept nogil:
    """The next n values of a scratch block (NULL for n = 0), followed up to
    carved_values(n) by padding and a red zone poisoned for AddressSanitizer (scratch_values
    sizes the block; the caller unpoisons it after the kernel)."""
    if n == 0:
        return NULL
    cdef floating* p = scratch + used[0]
    rf_asan_poison(p + n, <size_t> (carved_values(n) - n) * sizeof(floating))
    used[0] += carved_values(n)
    return p


cdef void forward_typed(floating tag, bint lstm, bint relu, bint batch_first, int T, int B,
                        int D, int H, x, h0, c0, Wx, Wh, b, gates, hs, cs, int chunk,
                        int n_slots, out, h_n, c_n, scratch, Py_ssize_t* sizes):
    """``gates``, ``hs``, ``cs``: the training workspace's arrays, or None (inference): then
    they are carved, like every other buffer, from ``scratch``; ``sizes``: the values of
    gates, hs, cs, xbuf, Wp, WxP, a_scratch (0: not used)."""
    cdef Layout lay = make_layout(T, B, batch_first)
    cdef const floating* x_p = <const floating*> data(x)
    cdef const floating* h0_p = <const floating*> data(h0)
    cdef const floating* c0_p = <const floating*> data(c0)
    cdef const floating* Wx_p = <const floating*> data(Wx)
    cdef const floating* Wh_p = <const floating*> data(Wh)
    cdef const floating* b_p = <const floating*> data(b)
    cdef floating* out_p = <floating*> data(out)
    cdef floating* h_n_p = <floating*> data(h_n)
    cdef floating* c_n_p = <floating*> data(c_n)
    cdef floating* base = <floating*> data(scratch)
    cdef Py_ssize_t used = 0
    cdef floating* gates_p = <floating*> data(gates)
    cdef floating* hs_p = <floating*> data(hs)
    cdef floating* cs_p = <floating*> data(cs)
    if gates is None:
        gates_p = carve(base, &used, sizes[0])
        hs_p = carve(base, &used, sizes[1])
        cs_p = carve(base, &used, sizes[2])
    cdef floating* xbuf_p = carve(base, &used, sizes[3])
    cdef floating* Wp_p = carve(base, &used, sizes[4])
    cdef floating* WxP_p = carve(base, &used, sizes[5])
    cdef floating* a_scratch_p = carve(base, &used, sizes[6])
    cdef unsigned int csr
    with nogil:
        csr = rf_denormals_off()
        forward_loop(lstm, relu, lay, D, H, x_p, h0_p, c0_p, Wx_p, Wh_p, b_p, gates_p, chunk,
                     xbuf_p, hs_p, cs_p, n_slots, out_p, h_n_p, c_n_p, Wp_p, WxP_p,
                     a_scratch_p)
        rf_denormals_restore(csr)
        rf_asan_unpoison(base, <size_t> used * sizeof(floating))


cdef void backward_typed(floating tag, bint lstm, bint relu, bint batch_first, int T, int B,
                         int D, int H, dout, x, Wx, Wh, hs, cs, gates, dh_rec, dc, dx, dWx,
                         dWh, db, scratch, Py_ssize_t* sizes):
    """``scratch``: one block for the internal buffers, of ``sizes`` values: zero_row,
    xbuf, WpT, a_scratch, dGp, WxTp (0: not used; see _backward)."""
    cdef Layout lay = make_layout(T, B, batch_first)
    cdef const floating* dout_p = <const floating*> data(dout)
    cdef const floating* x_p = <const floating*> data(x)
    cdef const floating* Wx_p = <const floating*> data(Wx)
    cdef const floating* Wh_p = <const floating*> data(Wh)
    cdef const floating* hs_p = <const floating*> data(hs)
    cdef const floating* cs_p = <const floating*> data(cs)
    cdef floating* gates_p = <floating*> data(gates)
    cdef floating* dh_rec_p = <floating*> data(dh_rec)
    cdef floating* dc_p = <floating*> data(dc)
    cdef floating* dx_p = <floating*> data(dx)
    cdef floating* dWx_p = <floating*> data(dWx)
    cdef floating* dWh_p = <floating*> data(dWh)
    cdef floating* db_p = <floating*> data(db)
    cdef floating* base = <floating*> data(scratch)
    cdef Py_ssize_t used = 0
    cdef floating* zero_row_p = carve(base, &used, sizes[0])
    cdef floating* xbuf_p = carve(base, &used, sizes[1])
    cdef floating* WpT_p = carve(base, &used, sizes[2])
    cdef floating* a_scratch_p = carve(base, &used, sizes[3])
    cdef floating* dGp_p = carve(base, &used, sizes[4])
    cdef floating* WxTp_p = carve(base, &used, sizes[5])
    # the deferred products share the per-step products' A scratch (sized for both)
    cdef floating* deferred_scratch_p = a_scratch_p if dGp_p != NULL else NULL
    cdef unsigned int csr
    with nogil:
        memset(zero_row_p, 0, <size_t> H * sizeof(floating))
        csr = rf_denormals_off()
        backward_loop(lstm, relu, lay, D, H, dout_p, zero_row_p, x_p, Wx_p, Wh_p, WpT_p,
                      a_scratch_p, hs_p, cs_p, gates_p, dh_rec_p, dc_p, xbuf_p, dx_p, dWx_p,
                      dWh_p, db_p, dGp_p, WxTp_p, deferred_scratch_p)
        rf_denormals_restore(csr)
        rf_asan_unpoison(base, <size_t> used * sizeof(floating))


# ----------------------------------------------------------------------------- Python faces

cdef struct Dims:
    Py_ssize_t B, T, D, H, G      # batch, seq_len, input, hidden, gates x hidden


cdef inline Dims dims_of(cnp.ndarray x, cnp.ndarray Wh, bint batch_first) noexcept:
    """The sizes of a call (checked arrays)."""
    cdef Dims d
    d.B, d.T = (x.shape[0], x.shape[1]) if batch_first else (x.shape[1], x.shape[0])
    d.D, d.H, d.G = x.shape[2], Wh.shape[0], Wh.shape[1]
    return d


def _state_or_zeros(s, B, H, dtype):
    return np.zeros((B, H), dtype) if s is None else np.array(s, dtype=dtype, copy=True)


# Problems whose per-step product has up to this many multiply-adds (batch x hidden x G*hidden)
# run their forward products and per-step backward products in rf_packed_gemm, on weights
# packed once per call; larger ones in BLAS. (Measured: packed is faster on every grid cell;
# a module attribute so that the comparison can be rerun with packed_max_work = 0.)
packed_max_work = 1 << 62


# rf_packed_gemm's scratch for the interleaved rows of its left operand: at most RF_MC * RF_KC
A_PACKED_SIZE = RF_MC * RF_KC


cdef bint use_packed(long long step_work, bint is_float):
    """Whether a call's products run in rf_packed_gemm. float64 problems with large
    per-step products stay in BLAS: there dgemm beat our double micro-kernel (large
    float64 cells 0.83-0.97x the NumPy twin with it)."""
    if not is_float and step_work >= RF_PARALLEL_MIN_WORK:
        return False
    return step_work <= packed_max_work


cdef inline Py_ssize_t packed_size(bint is_float, int K, int N) noexcept:
    """Values in a (K, N) weight packed by rf_pack_panels: N padded to whole panels."""
    return rf_packed_size_f(K, N) if is_float else rf_packed_size_d(K, N)


cdef inline Py_ssize_t a_packed_size(Py_ssize_t max_rows, Py_ssize_t max_k) noexcept:
    """rf_packed_gemm's scratch for products of at most max_rows rows and max_k terms."""
    return min(<Py_ssize_t> RF_MC, max_rows) * min(<Py_ssize_t> RF_KC, max_k)


cdef Py_ssize_t scratch_values(Py_ssize_t* sizes, int n) noexcept:
    """Values of one scratch block holding buffers of ``sizes`` values (see carve)."""
    cdef Py_ssize_t total = 0
    cdef int i
    for i in range(n):
        if sizes[i] > 0:
            total += carved_values(sizes[i])
    return total


cdef inline cnp.ndarray empty(int nd, cnp.npy_intp* dims, bint is_float):
    """np.empty through the C API (a fifth of np.empty's cost per call; a tiny forward
    allocates four arrays)."""
    return cnp.PyArray_EMPTY(nd, dims, cnp.NPY_FLOAT32 if is_float else cnp.NPY_FLOAT64, 0)


cdef enum:
    POOL_MIN_BYTES = 128 * 1024     # glibc's initial threshold for malloc through mmap


cdef cnp.ndarray pooled(dict pool, str name, int nd, cnp.npy_intp* dims, bint is_float):
    """Like empty(nd, dims), but with a pool (BufferedKernels': buffers kept between one
    layer's calls) a view of the first values of the flat buffer it keeps under ``name``,
    grown when too small. Fresh pages cost a fault each (clear and map): per-call
    allocation of a training workspace spent 17-32% of a medium fwd+bwd in the kernel."""
    cdef cnp.npy_intp n = 1
    cdef int i
    for i in range(nd):
        n *= dims[i]
    # small arrays come from malloc's heap without faults, and pooling costs ~1 us each
    if pool is None or n * (4 if is_float else 8) < POOL_MIN_BYTES:
        return empty(nd, dims, is_float)
    cdef cnp.ndarray flat = pool.get(name)
    if (flat is None or cnp.PyArray_DIM(flat, 0) < n
            or (cnp.PyArray_ITEMSIZE(flat) == 4) != is_float):
        flat = empty(1, &n, is_float)
        pool[name] = flat
    return flat[:n].reshape([dims[i] for i in range(nd)])


def _forward(cell, bint relu, x, h0, c0, Wx, Wh, b, bint batch_first, bint training,
             dict pool=None):
    """Allocates outputs and buffers, runs forward_typed; returns
    ``(out, h_n, c_n, workspace)`` (c_n None for the RNN). ``pool``: see pooled()."""
    cdef bint lstm = cell == "lstm"
    cdef bint is_float = Wx.dtype.itemsize == 4    # (checked arrays: float32 or float64)
    cdef Dims d = dims_of(x, Wh, batch_first)
    cdef Py_ssize_t B = d.B, T = d.T, D = d.D, H = d.H, G = d.G, chunk, n_slots
    cdef Py_ssize_t sizes[7]
    cdef cnp.npy_intp dims[3]
    dt = Wx.dtype
    dims[0], dims[1], dims[2] = (B, T, H) if batch_first else (T, B, H)    # out: like x
    out = empty(3, dims, is_float)
    cdef bint packed = use_packed(<long long> B * H * G, is_float)   # else BLAS
    chunk = max(1, min(T, (CHUNK_ROWS if packed else BLAS_CHUNK_ROWS) // B))
    n_slots = T + 1 if training else 2
    gates = hs = cs = workspace = None
    if training:        # the BPTT workspace; in inference these come from the scratch block
        dims[0], dims[1], dims[2] = T, B, G
        gates = pooled(pool, "gates", 3, dims, is_float)
        dims[0], dims[1], dims[2] = n_slots, B, H
        hs = pooled(pool, "hs", 3, dims, is_float)
        cs = pooled(pool, "cs", 3, dims, is_float) if lstm else None
        workspace = {"backend": "cython", "cell": cell, "batch_first": batch_first,
                     "dims": (B, T, H), "gates": gates, "hs": hs, "cs": cs}
        if not lstm:
            workspace["nonlinearity"] = "relu" if relu else "tanh"
    if T == 0:
        return (out, _state_or_zeros(h0, B, H, dt),
                _state_or_zeros(c0, B, H, dt) if lstm else None, workspace)
    sizes[0] = 0 if training else chunk * B * G                     # gates
    sizes[1] = 0 if training else n_slots * B * H                   # hs
    sizes[2] = 0 if training or not lstm else n_slots * B * H       # cs
    sizes[3] = chunk * B * D if batch_first and B > 1 else 0        # xbuf: x time-major
    sizes[4] = packed_size(is_float, H, G) if packed else 0         # Wp: Wh packed
    sizes[5] = packed_size(is_float, D, G) if packed else 0         # WxP: Wx packed
    sizes[6] = a_packed_size(max(B, chunk * B), max(H, D)) if packed else 0
    dims[0] = scratch_values(sizes, 7)
    scratch = pooled(pool, "forward scratch", 1, dims, is_float)
    dims[0], dims[1] = B, H
    h_n = empty(2, dims, is_float)
    c_n = empty(2, dims, is_float) if lstm else None
    if is_float:
        forward_typed[float](0, lstm, relu, batch_first, T, B, D, H, x, h0, c0, Wx, Wh, b,
                             gates, hs, cs, chunk, n_slots, out, h_n, c_n, scratch, sizes)
    else:
        forward_typed[double](0, lstm, relu, batch_first, T, B, D, H, x, h0, c0, Wx, Wh, b,
                              gates, hs, cs, chunk, n_slots, out, h_n, c_n, scratch, sizes)
    return out, h_n, c_n, workspace


def _backward(cell, bint relu, dout, dh_n, dc_n, x, Wx, Wh, workspace, bint batch_first,
              dict pool=None):
    """Allocates gradients and scratch, runs backward_typed; returns
    ``(dx, dh0, dc0, dWx, dWh, db)`` (dc0 None for the RNN). ``pool``: see pooled()."""
    cdef bint lstm = cell == "lstm"
    cdef bint is_float = Wx.dtype.itemsize == 4    # (checked arrays: float32 or float64)
    cdef Dims d = dims_of(x, Wh, batch_first)
    cdef Py_ssize_t B = d.B, T = d.T, D = d.D, H = d.H, G = d.G
    cdef Py_ssize_t sizes[6]
    cdef cnp.npy_intp dims[1]
    dt = Wx.dtype
    dh_rec = _state_or_zeros(dh_n, B, H, dt)        # becomes dh0
    dc = _state_or_zeros(dc_n, B, H, dt) if lstm else None      # becomes dc0
    if T == 0:
        return (np.zeros(x.shape, dt), dh_rec, dc, np.zeros(Wx.shape, dt),
                np.zeros(Wh.shape, dt), np.zeros(G, dt))
    # every value of these is written by the kernels
    dx = np.empty(x.shape, dt)
    dWx = np.empty(Wx.shape, dt)
    dWh = np.empty(Wh.shape, dt)
    dims[0] = G
    db = empty(1, dims, is_float)
    cdef bint packed = use_packed(<long long> B * H * G, is_float)   # else BLAS
    # the deferred products too (large problems: BLAS)
    cdef bint deferred_packed = packed and B * H * G < RF_PARALLEL_MIN_WORK
    sizes[0] = H                                                    # zero_row: dout's stand-in
    sizes[1] = T * B * D if batch_first and B > 1 else 0            # xbuf: x (and dx) time-major
    sizes[2] = packed_size(is_float, G, H) if packed else 0         # WpT: Wh.T packed
    sizes[3] = (a_packed_size(max(B, D, H, T * B), max(G, T * B))   # a_scratch
                if packed else 0)
    sizes[4] = packed_size(is_float, T * B, G) if deferred_packed else 0    # dGp: dG packed
    sizes[5] = packed_size(is_float, G, D) if deferred_packed else 0        # WxTp: Wx.T packed
    dims[0] = scratch_values(sizes, 6)
    scratch = pooled(pool, "backward scratch", 1, dims, is_float)
    hs, cs, gates = workspace["hs"], workspace["cs"], workspace["gates"]
    if is_float:
        backward_typed[float](0, lstm, relu, batch_first, T, B, D, H, dout, x, Wx, Wh, hs,
                              cs, gates, dh_rec, dc, dx, dWx, dWh, db, scratch, sizes)
    else:
        backward_typed[double](0, lstm, relu, batch_first, T, B, D, H, dout, x, Wx, Wh, hs,
                               cs, gates, dh_rec, dc, dx, dWx, dWh, db, scratch, sizes)
    return dx, dh_rec, dc, dWx, dWh, db


def rnn_forward(x, h0, Wx, Wh, b, nonlinearity="tanh", batch_first=True, training=True):
    """Returns ``(out, h_n, workspace)``; workspace is None unless ``training``."""
    out, h_n, _, workspace = _forward("rnn", nonlinearity == "relu", x, h0, None, Wx, Wh, b,
                                      batch_first, training)
    return out, h_n, workspace


def rnn_backward(dout, dh_n, x, Wx, Wh, workspace, nonlinearity="tanh", batch_first=True):
    """Returns ``(dx, dh0, dWx, dWh, db)``. Overwrites the workspace's gates."""
    dx, dh0, _, dWx, dWh, db = _backward("rnn", nonlinearity == "relu", dout, dh_n, None, x,
                                         Wx, Wh, workspace, batch_first)
    return dx, dh0, dWx, dWh, db


def lstm_forward(x, h0, c0, Wx, Wh, b, batch_first=True, training=True):
    """Returns ``(out, h_n, c_n, workspace)``; workspace is None unless ``training``."""
    return _forward("lstm", False, x, h0, c0, Wx, Wh, b, batch_first, training)


def lstm_backward(dout, dh_n, dc_n, x, Wx, Wh, workspace, batch_first=True):
    """Returns ``(dx, dh0, dc0, dWx, dWh, db)``. Overwrites the workspace's gates."""
    return _backward("lstm", False, dout, dh_n, dc_n, x, Wx, Wh, workspace, batch_first)


class BufferedKernels:
    """The four kernels above, for one layer: the training workspace and the scratch
    blocks are kept between calls and reused instead of allocated anew (outputs and
    gradients are always new arrays). So a workspace is valid only until the next
    training forward, and one object serves one thread at a time. Inference allocates
    as the module functions do (an eval layer may be shared by threads)."""

    def __init__(self):
        self._pool = {}

    def release(self):
        """Drop the kept buffers (the next training call allocates them again)."""
        self._pool.clear()

    def kept_copy(self, cnp.ndarray x):
        """A copy of the checked input x, for backward, in a kept buffer: valid, like the
        workspace, until the next training forward."""
        copy = pooled(self._pool, "x", cnp.PyArray_NDIM(x), cnp.PyArray_DIMS(x),
                      x.dtype.itemsize == 4)
        np.copyto(copy, x)
        return copy

    def rnn_forward(self, x, h0, Wx, Wh, b, nonlinearity="tanh", batch_first=True,
                    training=True):
        out, h_n, _, workspace = _forward("rnn", nonlinearity == "relu", x, h0, None, Wx, Wh,
                                          b, batch_first, training,
                                          self._pool if training else None)
        return out, h_n, workspace

    def rnn_backward(self, dout, dh_n, x, Wx, Wh, workspace, nonlinearity="tanh",
                     batch_first=True):
        dx, dh0, _, dWx, dWh, db = _backward("rnn", nonlinearity == "relu", dout, dh_n, None,
                                             x, Wx, Wh, workspace, batch_first, self._pool)
        return dx, dh0, dWx, dWh, db

    def lstm_forward(self, x, h0, c0, Wx, Wh, b, batch_first=True, training=True):
        return _forward("lstm", False, x, h0, c0, Wx, Wh, b, batch_first, training,
                        self._pool if training else None)

    def lstm_backward(self, dout, dh_n, dc_n, x, Wx, Wh, workspace, batch_first=True):
        return _backward("lstm", False, dout, dh_n, dc_n, x, Wx, Wh, workspace, batch_first,
                         self._pool)


def _tanh(x):
    """The compiled tanh approximation over a C-contiguous 1-D float32/float64 array."""
    y = np.empty_like(x)
    cdef float[::1] xf, yf
    cdef double[::1] xd, yd
    if x.dtype == np.float32:
        xf, yf = x, y
        rf_tanh_array_f(xf.shape[0], &xf[0], &yf[0])
    else:
        xd, yd = x, y
        rf_tanh_array_d(xd.shape[0], &xd[0], &yd[0])
    return y


def _sigmoid(x):
    """The compiled sigmoid approximation over a C-contiguous 1-D float32/float64 array."""
    y = np.empty_like(x)
    cdef float[::1] xf, yf
    cdef double[::1] xd, yd
    if x.dtype == np.float32:
        xf, yf = x, y
        rf_sigmoid_array_f(xf.shape[0], &xf[0], &yf[0])
    else:
        xd, yd = x, y
        rf_sigmoid_array_d(xd.shape[0], &xd[0], &yd[0])
    return y


def _packed_matmul_bench(float[:, ::1] a, float[:, ::1] w, int repeat):
    """Development aid: C = a @ w through the packed per-step product, ``repeat`` times."""
    cdef int m = a.shape[0], k = a.shape[1], n = w.shape[1], r
    wp = np.empty(rf_packed_size_f(k, n), np.float32)
    c = np.zeros((m, n), np.float32)
    ap = np.empty(A_PACKED_SIZE, np.float32)
    cdef float[::1] wp_v = wp
    cdef float[::1] ap_v = ap
    cdef float[:, ::1] c_v = c
    rf_pack_panels_f(k, n, &w[0, 0], n, 0, &wp_v[0])
    with nogil:
        for r in range(repeat):
            rf_packed_gemm_f(m, n, k, &a[0, 0], k, 0, &wp_v[0], 0, &c_v[0, 0], n, &ap_v[0], 1)
    return c


# ----------------------------------------------------------------------------- SIMD paths
# Every kernel of _simd.h is compiled for each path (_simd_paths.h). The best the CPU has
# runs unless RNNFAST_SIMD (read once, at import) or set_simd_path forces another, so that
# one machine can test all the paths it can run.

SIMD_PATHS = ("baseline", "avx2", "avx512")     # indexed by RF_PATH_*: each a superset
_SIMD_ACCEPTED = "'auto', 'avx512', 'avx2', 'baseline'"


def simd_paths():
    """The SIMD paths this CPU (and build) can run, best last: ``("baseline", "avx2",
    "avx512")`` on an AVX-512 machine."""
    return SIMD_PATHS[:rf_simd_cpu_best() + 1]


def simd_path():
    """The SIMD path the kernels run: ``"avx512"``, ``"avx2"`` or ``"baseline"``."""
    return SIMD_PATHS[rf_simd_current()]


def set_simd_path(name):
    """Run the kernels on the SIMD path ``name``: ``"auto"`` (the best this CPU has),
    ``"avx512"``, ``"avx2"`` or ``"baseline"``. ValueError for another name or a path the
    CPU cannot run. Not to be called while kernels run in other threads (a call in flight
    could mix paths). At import, the environment variable RNNFAST_SIMD sets it."""
    path, problem = _simd_choice(name, simd_paths())
    if problem is not None:
        raise ValueError(problem)
    rf_simd_use(SIMD_PATHS.index(path))


def _simd_choice(name, available):
    """``(path, problem)``: the path ``name`` selects among ``available`` (best last), and
    why it is not ``name`` itself (None if it is; then the best is taken). The one rule for
    set_simd_path and RNNFAST_SIMD."""
    best = available[len(available) - 1]      # (no negative indices: wraparound=False)
    if name == "auto":
        return best, None
    if not isinstance(name, str) or name not in SIMD_PATHS:
        return best, f"unknown SIMD path {name!r}; accepted values: {_SIMD_ACCEPTED}"
    if name not in available:
        return best, f"this CPU cannot run the SIMD path {name!r} (it runs {', '.join(available)})"
    return name, None


def _simd_from_environment():
    """Select the path RNNFAST_SIMD names (any case; unset or empty: auto). A value that
    cannot be honoured is reported (RuntimeWarning) and ignored: the best path runs."""
    value = os.environ.get("RNNFAST_SIMD", "")
    path, problem = _simd_choice(value.strip().lower() or "auto", simd_paths())
    if problem is not None:
        warnings.warn(f"RNNFAST_SIMD={value!r} ignored: {problem}; running {path!r}",
                      RuntimeWarning)
    rf_simd_use(SIMD_PATHS.index(path))


_simd_from_environment()
