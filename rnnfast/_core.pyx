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
from cpython.ref cimport Py_REFCNT
from cpython.dict cimport PyDict_GetItem
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject
from libc.limits cimport INT_MAX
from libc.math cimport exp, expf, log, logf
from libc.string cimport memcmp, memcpy, memset

from rnnfast._blas cimport gemm

cnp.import_array()


cdef extern from "_simd.h" nogil:
    const long long RF_PARALLEL_MIN_WORK
    const long long RF_THREADS_MIN_WORK
    const int RF_MC
    const int RF_KC
    const int RF_K_GROUP
    int rf_team_threads()
    int rf_get_policy()
    void rf_set_policy(int policy)
    int rf_get_calls_in_flight()
    long long rf_get_late_regions()
    long long rf_get_cold_late_regions()
    int rf_cold_call_solo(long long work)
    int rf_cold_wakeups_slow()
    long long rf_get_last_spread()
    long long rf_get_last_fastest()
    void rf_go_solo_for(long long ns)
    void rf_call_begin()
    void rf_call_end()
    ctypedef struct rf_team_timer:
        long long start_ns
        long long done_ns[64]
        int threads
        int cold
        long long idle_ns
    void rf_team_start(rf_team_timer* timer, int threads)
    void rf_team_done(rf_team_timer* timer)
    void rf_team_end(rf_team_timer* timer)
    int rf_small_pair_shares()
    int rf_cores_taken(int team)
    int rf_small_pair_end(rf_team_timer* timer, long long work0, long long work1)
    long long rf_get_small_pairs_late()
    int rf_simd_cpu_best()
    int rf_simd_use(int path)
    int rf_simd_current()
    long long rf_w_in_cache_use(long long bytes)
    int rf_interleave_aliased_use(int mode)
    const int RF_PATH_AVX512
    void rf_asan_poison(const void* p, size_t n)
    void rf_asan_unpoison(const void* p, size_t n)
    unsigned int rf_denormals_off()
    void rf_denormals_restore(unsigned int old)
    void rf_exp_array_f(Py_ssize_t n, const float* x, float* y)
    void rf_exp_array_d(Py_ssize_t n, const double* x, double* y)
    void rf_tanh_array_f(Py_ssize_t n, const float* x, float* y)
    void rf_tanh_array_d(Py_ssize_t n, const double* x, double* y)
    void rf_sigmoid_array_f(Py_ssize_t n, const float* x, float* y)
    void rf_sigmoid_array_d(Py_ssize_t n, const double* x, double* y)
    void rf_rnn_forward_row_f(int n, int act, const float* a, const float* b, float* h,
                              float* h_out)
    void rf_rnn_forward_row_d(int n, int act, const double* a, const double* b, double* h,
                              double* h_out)
    void rf_rnn_backward_row_f(int n, int act, const float* dout, const float* dh_rec,
                               const float* h, float* dpre)
    void rf_rnn_backward_row_d(int n, int act, const double* dout, const double* dh_rec,
                               const double* h, double* dpre)
    void rf_lstm_forward_row_f(int n, float* gates, const float* b, const float* c_prev,
                               float* c, float* h, float* h_out)
    void rf_lstm_forward_row_d(int n, double* gates, const double* b, const double* c_prev,
                               double* c, double* h, double* h_out)
    void rf_lstm_backward_row_f(int n, float* gates, const float* c, const float* c_prev,
                                const float* dout, const float* dh_rec, float* dc)
    void rf_lstm_backward_row_d(int n, double* gates, const double* c, const double* c_prev,
                                const double* dout, const double* dh_rec, double* dc)
    void rf_gru_forward_row_f(int n, float* gates, float* hgates, const float* b,
                              const float* b_hn, const float* h_prev, float* h, float* h_out)
    void rf_gru_forward_row_d(int n, double* gates, double* hgates, const double* b,
                              const double* b_hn, const double* h_prev, double* h,
                              double* h_out)
    void rf_gru_backward_row_f(int n, float* gates, float* hgates, const float* h_prev,
                               const float* dout, float* dh_rec)
    void rf_gru_backward_row_d(int n, double* gates, double* hgates, const double* h_prev,
                               const double* dout, double* dh_rec)
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
    void rf_transpose_f(int rows, int cols, const float* src, Py_ssize_t lds, float* dst,
                        Py_ssize_t ldd)
    void rf_transpose_d(int rows, int cols, const double* src, Py_ssize_t lds, double* dst,
                        Py_ssize_t ldd)
    int rf_all_zero_f(Py_ssize_t n, const float* x)
    int rf_all_zero_d(Py_ssize_t n, const double* x)
    int rf_all_finite_f(Py_ssize_t n, const float* x)
    int rf_all_finite_d(Py_ssize_t n, const double* x)


# Inference projects the inputs chunk by chunk into a reused gate buffer of about this many
# rows (steps x batch), so its memory does not grow with seq_len, and the gates are still in
# cache when their step reads them (64 against 512: medium LSTM 1.08x, large 1.05-1.11x;
# 32: same as 64).
cdef enum:
    CHUNK_ROWS = 64
    # BLAS re-packs Wx at every call: there fewer, larger chunks (float64 large-rnn-fwd
    # 1.09x the twin with 512 rows, 1.00x with 64)
    BLAS_CHUNK_ROWS = 512
    # A zero h_{-1} skips step 0's product h_{-1} @ Wh once it has this many rows: the
    # check that Wh is finite (0 * inf is NaN) reads Wh once, as a 1-row product does
    ZERO_START_MIN_ROWS = 4
    # ... and its step-0 rows of dWh once they are this many multiply-adds: dG is then
    # packed in two parts, two more calls (a batch-1 call keeps them: 0.5-1% slower else)
    ZERO_START_MIN_WORK = 1 << 15


# ----------------------------------------------------------------------------- cells
# The kinds of cell the kernels know, in the order of rnnfast.cells (KINDS): the RNN's
# activation code in the C rows is its kind (tanh 0, relu 1, sigmoid 2).

cdef enum Kind:
    KIND_RNN_TANH = 0
    KIND_RNN_RELU = 1
    KIND_RNN_SIGMOID = 2
    KIND_LSTM = 3
    KIND_GRU = 4

KINDS = ("rnn_tanh", "rnn_relu", "rnn_sigmoid", "lstm", "gru")


cdef struct Cell:
    int kind        # Kind
    int D           # input features
    int H           # hidden units
    int G           # gate columns: gates x hidden


# ----------------------------------------------------------------------------- row helpers
# Fused front doors to the C row functions of _simd.h: each cell's row math is there, a
# forward row and its backward row side by side.

cdef inline void rnn_forward_row(int n, int act, const floating* a, const floating* b,
                                 floating* h, floating* h_out) noexcept nogil:
    if floating is float:
        rf_rnn_forward_row_f(n, act, a, b, h, h_out)
    else:
        rf_rnn_forward_row_d(n, act, a, b, h, h_out)


cdef inline void rnn_backward_row(int n, int act, const floating* dout,
                                  const floating* dh_rec, const floating* h,
                                  floating* dpre) noexcept nogil:
    if floating is float:
        rf_rnn_backward_row_f(n, act, dout, dh_rec, h, dpre)
    else:
        rf_rnn_backward_row_d(n, act, dout, dh_rec, h, dpre)


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


cdef inline void gru_forward_row(int n, floating* gates, floating* hgates, const floating* b,
                                 const floating* b_hn, const floating* h_prev, floating* h,
                                 floating* h_out) noexcept nogil:
    if floating is float:
        rf_gru_forward_row_f(n, gates, hgates, b, b_hn, h_prev, h, h_out)
    else:
        rf_gru_forward_row_d(n, gates, hgates, b, b_hn, h_prev, h, h_out)


cdef inline void gru_backward_row(int n, floating* gates, floating* hgates,
                                  const floating* h_prev, const floating* dout,
                                  floating* dh_rec) noexcept nogil:
    if floating is float:
        rf_gru_backward_row_f(n, gates, hgates, h_prev, dout, dh_rec)
    else:
        rf_gru_backward_row_d(n, gates, hgates, h_prev, dout, dh_rec)


cdef inline void add_column_sums(Py_ssize_t rows, int n, const floating* src, Py_ssize_t ld,
                                 floating* dst) noexcept nogil:
    if floating is float:
        rf_add_column_sums_f(rows, n, src, ld, dst)
    else:
        rf_add_column_sums_d(rows, n, src, ld, dst)


cdef inline void exp_array(Py_ssize_t n, const floating* x, floating* y) noexcept nogil:
    if floating is float:
        rf_exp_array_f(n, x, y)
    else:
        rf_exp_array_d(n, x, y)


cdef inline bint all_zero(Py_ssize_t n, const floating* x) noexcept nogil:
    if floating is float:
        return rf_all_zero_f(n, x)
    else:
        return rf_all_zero_d(n, x)


cdef inline bint all_finite(Py_ssize_t n, const floating* x) noexcept nogil:
    if floating is float:
        return rf_all_finite_f(n, x)
    else:
        return rf_all_finite_d(n, x)


cdef inline bint zero_product(int m, int k, int n, const floating* a,
                              const floating* w) noexcept nogil:
    """Whether the product a (m, k) @ w (k, n) is exactly zero, to the sign of its zeros:
    a all zero (its m * k values, stored either way round) and w finite. A zero start's
    step 0: h_{-1} @ Wh in the forward, h_{-1}.T @ dGh (dWh's rows) in the backward."""
    return all_zero(<Py_ssize_t> m * k, a) and all_finite(<Py_ssize_t> k * n, w)


cdef inline Py_ssize_t packed_size(bint is_float, int K, int N) noexcept nogil:
    """Values in a (K, N) weight packed by rf_pack_panels: N padded to whole panels."""
    return rf_packed_size_f(K, N) if is_float else rf_packed_size_d(K, N)


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
    # How the loop's steps map onto the user's arrays. Loop step s of (sorted) row i is the
    # user's row order[i] at time s, or len_i - 1 - s in reverse (a bidirectional layer's
    # reverse direction starts at each row's own end, as PyTorch's packed sequences); its row
    # of x (or dx) starts at (time * step + user row * batch) * width, and of out (or dout)
    # at that row * out_width + out_col (the two directions write the halves of one output).
    # Inside, step s has active(s) rows, the rows longer than s (sorted longest first), at
    # packed row offset(s) of the time-major gate and state buffers: padding is never
    # computed, and step s's rows are a prefix of step s-1's.
    int T
    int B
    Py_ssize_t step
    Py_ssize_t batch
    int out_width
    int out_col
    bint reverse
    const int* order            # user row of each sorted row; NULL: all rows of length T
    const int* lengths          # length of each sorted row
    const int* batch_sizes      # active rows of each step, T + 1 entries (the last 0)
    const Py_ssize_t* offsets   # packed row of each step, T + 1 entries (the last: all rows)


cdef inline Layout make_layout(int T, int B, bint batch_first, int out_width) noexcept nogil:
    """A full-length, forward-direction layout (every row of length T, none sorted)."""
    cdef Layout lay
    lay.T = T
    lay.B = B
    lay.step = 1 if batch_first else B
    lay.batch = T if batch_first else 1
    lay.out_width = out_width
    lay.out_col = 0
    lay.reverse = False
    lay.order = lay.lengths = lay.batch_sizes = NULL
    lay.offsets = NULL
    return lay


cdef inline int active(const Layout* lay, int s) noexcept nogil:
    """Rows taking part in step s (0 past the last step)."""
    if s >= lay.T:
        return 0
    return lay.B if lay.order == NULL else lay.batch_sizes[s]


cdef inline Py_ssize_t offset(const Layout* lay, int s) noexcept nogil:
    """Packed row of step s's first row (for s = T: the rows of all steps, N)."""
    return <Py_ssize_t> s * lay.B if lay.order == NULL else lay.offsets[s]


cdef inline Py_ssize_t user_row(const Layout* lay, int s, int i) noexcept nogil:
    """Row of the user's sequence arrays that step s of sorted row i reads or writes."""
    cdef int length = lay.T
    cdef int b = i
    if lay.order != NULL:
        length = lay.lengths[i]
        b = lay.order[i]
    cdef int t = length - 1 - s if lay.reverse else s
    return t * lay.step + b * lay.batch


cdef inline bint gathers(const Layout* lay) noexcept nogil:
    """Whether the packed rows differ from the user array's own (time-major, forward, full
    length): then x is gathered into packed order (and dx scattered back). (One batch row:
    batch-first and time-major are the same memory.)"""
    return lay.order != NULL or lay.reverse or (lay.step != lay.B and lay.B > 1)


cdef void gather_state(const Layout* lay, int H, const floating* src,
                       floating* dst) noexcept nogil:
    """dst (B, H) in sorted row order = the user's src (B, H), or zeros when src is NULL (no
    initial state given)."""
    cdef int i
    if src == NULL:
        memset(dst, 0, <size_t> lay.B * H * sizeof(floating))
    elif lay.order == NULL:
        memcpy(dst, src, <size_t> lay.B * H * sizeof(floating))
    else:
        for i in range(lay.B):
            memcpy(dst + <Py_ssize_t> i * H, src + <Py_ssize_t> lay.order[i] * H,
                   H * sizeof(floating))


cdef void scatter_state(const Layout* lay, int H, const floating* src,
                        floating* dst) noexcept nogil:
    """The user's dst (B, H) = src (B, H) in sorted row order."""
    cdef int i
    if lay.order == NULL:
        memcpy(dst, src, <size_t> lay.B * H * sizeof(floating))
    else:
        for i in range(lay.B):
            memcpy(dst + <Py_ssize_t> lay.order[i] * H, src + <Py_ssize_t> i * H,
                   H * sizeof(floating))


cdef const floating* steps_packed(const Layout* lay, int s0, int n, int width,
                                  const floating* a, floating* buf) noexcept nogil:
    """The rows of steps s0 .. s0+n-1 of a user array as one packed (rows, width) matrix:
    ``a`` itself where its own rows are in that order, else gathered into ``buf``."""
    cdef int s, i
    cdef Py_ssize_t r
    if not gathers(lay):
        return a + <Py_ssize_t> s0 * lay.B * width
    for s in range(s0, s0 + n):
        r = offset(lay, s) - offset(lay, s0)
        for i in range(active(lay, s)):
            memcpy(buf + (r + i) * width, a + user_row(lay, s, i) * width,
                   width * sizeof(floating))
    return buf


cdef void scatter_steps(const Layout* lay, int width, const floating* src, floating* a,
                        bint add) noexcept nogil:
    """The user array ``a`` = (or, with ``add``, +=) the packed rows of all steps ``src``.
    (Rows past a sequence's end are not written.)"""
    cdef int s, i, k
    cdef floating* dst
    cdef const floating* row
    for s in range(lay.T):
        for i in range(active(lay, s)):
            dst = a + user_row(lay, s, i) * width
            row = src + (offset(lay, s) + i) * width
            if add:
                for k in range(width):
                    dst[k] += row[k]
            else:
                memcpy(dst, row, width * sizeof(floating))


# ----------------------------------------------------------------------------- step rows
# The elementwise pass of one step over its sorted rows i0 .. i1-1; with several threads the
# rows are shared out (split_rows) in the same way as the products' panels. A row's new
# state goes to the next step's block, or to the last-states block if its sequence ends here
# (it is not among the next step's n_next rows).

cdef void forward_rows(Cell cell, const Layout* lay, int s, int i0, int i1,
                       floating* gates_t, floating* hgates_t, const floating* b,
                       const floating* b_hn, const floating* h_prev, const floating* c_prev,
                       floating* h_next, floating* c_next, floating* h_last,
                       floating* c_last, int n_next, floating* out,
                       floating* c_out) noexcept nogil:
    cdef int H = cell.H, G = cell.G
    cdef int i
    cdef Py_ssize_t row
    cdef floating* out_row
    cdef floating* h_row
    cdef floating* c_row
    for i in range(i0, i1):
        row = user_row(lay, s, i) * lay.out_width + lay.out_col
        out_row = out + row
        h_row = (h_next if i < n_next else h_last) + <Py_ssize_t> i * H
        if cell.kind == KIND_LSTM:
            c_row = (c_next if i < n_next else c_last) + <Py_ssize_t> i * H
            lstm_forward_row(H, gates_t + <Py_ssize_t> i * G, b, c_prev + <Py_ssize_t> i * H,
                             c_row, h_row, out_row)
            if c_out != NULL:                               # every c_t (return_cells)
                memcpy(c_out + row, c_row, H * sizeof(floating))
        elif cell.kind == KIND_GRU:
            gru_forward_row(H, gates_t + <Py_ssize_t> i * G, hgates_t + <Py_ssize_t> i * G, b,
                            b_hn, h_prev + <Py_ssize_t> i * H, h_row, out_row)
        else:
            rnn_forward_row(H, cell.kind, gates_t + <Py_ssize_t> i * G, b, h_row, out_row)


cdef void backward_rows(Cell cell, const Layout* lay, int s, int i0, int i1,
                        const floating* dout, const floating* zero_row,
                        const floating* h_prev, const floating* h_next,
                        const floating* h_last, const floating* c_prev,
                        const floating* c_next, const floating* c_last, int n_next,
                        floating* gates_t, floating* hgates_t, floating* dh_rec,
                        floating* dc, const floating* dcells) noexcept nogil:
    cdef int H = cell.H, G = cell.G
    cdef int i, k
    cdef Py_ssize_t row
    cdef const floating* dout_row
    cdef const floating* dc_given
    cdef floating* dc_row
    for i in range(i0, i1):
        row = user_row(lay, s, i) * lay.out_width + lay.out_col
        dout_row = zero_row if dout == NULL else dout + row
        if cell.kind == KIND_LSTM:
            if dcells != NULL:                              # dL/dc_t given (return_cells)
                dc_given = dcells + row
                dc_row = dc + <Py_ssize_t> i * H
                for k in range(H):
                    dc_row[k] += dc_given[k]
            lstm_backward_row(H, gates_t + <Py_ssize_t> i * G,
                              (c_next if i < n_next else c_last) + <Py_ssize_t> i * H,
                              c_prev + <Py_ssize_t> i * H, dout_row,
                              dh_rec + <Py_ssize_t> i * H, dc + <Py_ssize_t> i * H)
        elif cell.kind == KIND_GRU:
            gru_backward_row(H, gates_t + <Py_ssize_t> i * G, hgates_t + <Py_ssize_t> i * G,
                             h_prev + <Py_ssize_t> i * H, dout_row, dh_rec + <Py_ssize_t> i * H)
        else:
            rnn_backward_row(H, cell.kind, dout_row, dh_rec + <Py_ssize_t> i * H,
                             (h_next if i < n_next else h_last) + <Py_ssize_t> i * H,
                             gates_t + <Py_ssize_t> i * G)


cdef inline bint step_parallel(int B, int H, int G) noexcept nogil:
    """Whether a step's products and row pass may be shared among threads: only when the
    per-step product has RF_THREADS_MIN_WORK multiply-adds. All or nothing: after a
    parallel product the idle worker spins for milliseconds, on a core a serial step loop
    does not use but whose load slowed the loop down (medium RNN forward: 1.1-1.6x at 2
    threads)."""
    return <long long> B * H * G >= RF_THREADS_MIN_WORK


cdef inline int row_threads(int B, bint parallel) noexcept nogil:
    """Threads sharing out this step's batch rows (at most one per row): asked anew at
    every step, since the thread policy (_threads.h) may change its answer mid-call."""
    return min(rf_team_threads(), B) if parallel else 1


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

cdef struct ForwardArgs:
    # A forward's arrays, untyped (the fused loops cast them). States h0, c0 may be NULL.
    void* x
    void* h0
    void* c0
    void* Wx
    void* Wh
    void* b
    void* b_hn          # GRU only
    void* out
    void* h_n
    void* c_n           # LSTM only
    void* c_out         # LSTM: every c_t, laid out as out (return_cells), or NULL
    # gates: x_t @ Wx of `chunk` steps, reused chunk after chunk, or in training all steps'
    # packed rows (the BPTT workspace: the activated gates). hgates (GRU): h_{t-1} @ Wh of
    # one step, or in training of all steps (kept: the reset gate multiplies its n part).
    void* gates
    void* hgates
    # hs: the states blocks. Training: step s's h_{s-1} at packed row offset(s) (all N rows,
    # the matrix of the deferred dWh), then each row's last state (B rows). Inference: two
    # ping-pong blocks of B rows, then the last states. cs: the same for the LSTM's c.
    void* hs
    void* cs
    void* xbuf          # chunk steps of x, packed, when gathered
    void* Wp            # Wh packed, or NULL (BLAS)
    void* WxP           # Wx packed, or NULL
    void* a_scratch     # rf_packed_gemm's scratch for the interleaved rows of A
    int chunk
    bint wx_t           # Wx (D, G) lies in memory as its transpose (F-ordered: torch's
    bint wh_t           # weight_ih read as it is), Wh (H, G) likewise (weight_hh)
    bint training
    bint serial         # no OpenMP threads inside (the caller runs loops side by side)
    bint prepacked      # Wp and WxP already hold the packed weights (StepKernel)


cdef void forward_loop(floating tag, Cell cell, const Layout* lay,
                       ForwardArgs* a) noexcept nogil:
    """The forward of every cell: per chunk of steps one product x @ Wx, per step one
    product h @ Wh (into the gates, or for the GRU into its own buffer) and the row pass."""
    cdef int T = lay.T, B = lay.B, D = cell.D, H = cell.H, G = cell.G
    cdef bint training = a.training
    cdef bint gru = cell.kind == KIND_GRU
    cdef bint has_c = cell.kind == KIND_LSTM
    cdef bint parallel = step_parallel(B, H, G) and not a.serial
    cdef int threads, s, s0, n, m, part
    cdef Py_ssize_t N = offset(lay, T), chunk_row, rows, prev_row, next_row, last_row
    cdef floating* gates = <floating*> a.gates
    cdef floating* hgates = <floating*> a.hgates
    cdef floating* hs = <floating*> a.hs
    cdef floating* cs = <floating*> a.cs
    cdef floating* Wp = <floating*> a.Wp
    cdef floating* WxP = <floating*> a.WxP
    cdef floating* a_scratch = <floating*> a.a_scratch
    cdef const floating* Wx = <const floating*> a.Wx
    cdef const floating* Wh = <const floating*> a.Wh
    cdef const floating* b = <const floating*> a.b
    cdef const floating* b_hn = <const floating*> a.b_hn
    cdef floating* out = <floating*> a.out
    cdef const floating* x_chunk
    cdef floating* gates_chunk
    cdef floating* gates_t
    cdef floating* hgates_t = NULL
    cdef floating* h_prev
    cdef floating* h_next
    cdef floating* c_prev = NULL
    cdef floating* c_next = NULL
    cdef floating* c_last = NULL
    if Wp != NULL and not a.prepacked:
        # (an F-ordered W is W.T's rows: packed as a transposed weight)
        pack_panels(H, G, Wh, H if a.wh_t else G, a.wh_t, Wp)
        pack_panels(D, G, Wx, D if a.wx_t else G, a.wx_t, WxP)
    last_row = N if training else 2 * B                     # the last-states block
    gather_state(lay, H, <const floating*> a.h0, hs)        # step 0's block: h_{-1}
    if has_c:
        gather_state(lay, H, <const floating*> a.c0, cs)
        c_last = cs + last_row * H
    s0 = 0
    while s0 < T:                                           # chunk by chunk
        n = min(a.chunk, T - s0)
        x_chunk = steps_packed(lay, s0, n, D, <const floating*> a.x, <floating*> a.xbuf)
        chunk_row = offset(lay, s0)
        rows = offset(lay, s0 + n) - chunk_row
        gates_chunk = gates + (chunk_row * G if training else 0)
        # gates_chunk = x_chunk @ Wx, every row of every step of the chunk at once
        step_product(<int> rows, G, D, x_chunk, Wx, a.wx_t, WxP, False, gates_chunk,
                     a_scratch, parallel)
        for s in range(s0, s0 + n):
            m = active(lay, s)
            gates_t = gates_chunk + (offset(lay, s) - chunk_row) * G
            prev_row = offset(lay, s) if training else (s % 2) * B
            next_row = offset(lay, s + 1) if training else ((s + 1) % 2) * B
            h_prev = hs + prev_row * H
            h_next = hs + next_row * H
            if gru:
                hgates_t = hgates + (offset(lay, s) * G if training else 0)
            # a zero start (no initial state, or zeros) skips step 0's product, unless Wh
            # holds inf or NaN: 0 * inf is NaN, as in NumPy
            if (s == 0 and m >= ZERO_START_MIN_ROWS
                    and zero_product(m, H, G, <const floating*> h_prev, Wh)):
                if gru:
                    memset(hgates_t, 0, <size_t> m * G * sizeof(floating))
            elif gru:
                # hgates_t = h_prev @ Wh (apart from the gates: r multiplies its n part)
                step_product(m, G, H, h_prev, Wh, a.wh_t, Wp, False, hgates_t, a_scratch,
                             parallel)
            else:
                # gates_t += h_prev @ Wh
                step_product(m, G, H, h_prev, Wh, a.wh_t, Wp, True, gates_t, a_scratch,
                             parallel)
            if has_c:
                c_prev = cs + prev_row * H
                c_next = cs + next_row * H
            threads = row_threads(m, parallel)
            if threads > 1:
                for part in prange(threads, num_threads=threads, schedule="static"):
                    forward_rows(cell, lay, s, split_rows(m, threads, part),
                                 split_rows(m, threads, part + 1), gates_t, hgates_t, b,
                                 b_hn, h_prev, c_prev, h_next, c_next, hs + last_row * H,
                                 c_last, active(lay, s + 1), out, <floating*> a.c_out)
            else:
                forward_rows(cell, lay, s, 0, m, gates_t, hgates_t, b, b_hn, h_prev, c_prev,
                             h_next, c_next, hs + last_row * H, c_last, active(lay, s + 1),
                             out, <floating*> a.c_out)
        s0 += n
    scatter_state(lay, H, hs + last_row * H, <floating*> a.h_n)
    if has_c:
        scatter_state(lay, H, c_last, <floating*> a.c_n)


# ----------------------------------------------------------------------------- backward

cdef struct BackwardArgs:
    # A backward's arrays, untyped (the fused loops cast them).
    void* dout          # NULL: no gradient on the outputs (zero_row stands in)
    void* dcells        # LSTM: the gradient of every c_t, laid out as dout, or NULL
    void* zero_row
    void* x
    void* Wx
    void* Wh
    void* hs            # the forward's workspace: states, gates (overwritten by dG) ...
    void* cs
    void* gates
    void* hgates        # ... and the GRU's hidden-side gates (overwritten by dGh)
    void* dh0           # in: dL/dh_{T-1} (dh_n), out: dh0 (the user's row order)
    void* dc0           # in: dc_n, out: dc0 (LSTM)
    void* dh_rec        # dh0 itself, or its rows sorted (lengths)
    void* dc            # dc0 itself, or sorted
    void* xbuf          # (N, D) scratch when gathered: x, then dx, packed
    void* dx
    void* dWx
    void* dWh
    void* db
    void* db_hn         # GRU
    void* WpT           # Wh.T packed (with a_scratch), or NULL (BLAS)
    void* a_scratch
    void* dGp           # dG packed for the deferred products, or NULL (BLAS) ...
    void* WxTp          # ... and Wx.T packed
    void* deferred_scratch
    bint wx_t           # Wx, Wh F-ordered (see ForwardArgs)
    bint wh_t
    bint add_dx         # dx += (the other direction wrote it), not dx =
    bint dx_unused      # dx not computed (the caller needs no input gradient)
    bint dh0_unused     # dh0 not computed (no initial state was given); dc0 still is
    bint serial         # no OpenMP threads inside (the caller runs loops side by side)


cdef void backward_loop(floating tag, Cell cell, const Layout* lay,
                        BackwardArgs* a) noexcept nogil:
    """BPTT of every cell, overwriting the workspace gates with their gradients dG (and the
    GRU's hidden-side gates with dGh, which differs from dG in the n slice: r scales it).
    Per step the row pass and ``dh_rec (+)= dGh_t @ Wh.T`` over the step's rows (a row
    whose sequence ends later keeps its dh_n until its last step); then the weight
    gradients and dx as products over the packed rows of all steps."""
    cdef int T = lay.T, B = lay.B, D = cell.D, H = cell.H, G = cell.G
    cdef bint gru = cell.kind == KIND_GRU
    cdef bint has_c = cell.kind == KIND_LSTM
    cdef bint parallel = step_parallel(B, H, G) and not a.serial
    cdef int threads, s, m, n_next, part
    cdef Py_ssize_t rows = offset(lay, T)                   # N: the packed rows
    cdef Py_ssize_t k0                                      # dWh's first row
    cdef floating* gates = <floating*> a.gates
    cdef floating* hgates = <floating*> a.hgates
    cdef floating* dh_rec = <floating*> a.dh_rec
    cdef floating* dc = <floating*> a.dc
    cdef floating* WpT = <floating*> a.WpT
    cdef floating* dGp = <floating*> a.dGp
    cdef floating* WxTp = <floating*> a.WxTp
    cdef floating* a_scratch = <floating*> a.a_scratch
    cdef floating* deferred_scratch = <floating*> a.deferred_scratch
    cdef floating* xbuf = <floating*> a.xbuf
    cdef floating* dWx = <floating*> a.dWx
    cdef floating* dWh = <floating*> a.dWh
    cdef floating* db = <floating*> a.db
    cdef const floating* Wx = <const floating*> a.Wx
    cdef const floating* Wh = <const floating*> a.Wh
    cdef const floating* hs = <const floating*> a.hs
    cdef const floating* cs = <const floating*> a.cs
    cdef const floating* h_last = hs + rows * H
    cdef const floating* c_last = cs + rows * H if has_c else NULL
    # the hidden side's gate gradients: the gates' own, but for the GRU
    cdef floating* dGh = hgates if gru else gates
    cdef floating* gates_t
    cdef floating* hgates_t = NULL
    cdef const floating* xs
    cdef floating* dx_packed
    cdef floating* dGh_packed
    if WpT != NULL:                 # Wh.T: an F-ordered Wh's own rows
        pack_panels(G, H, Wh, H if a.wh_t else G, not a.wh_t, WpT)
    if dh_rec != <floating*> a.dh0:                         # sorted rows
        gather_state(lay, H, <const floating*> a.dh0, dh_rec)
        if has_c:
            gather_state(lay, H, <const floating*> a.dc0, dc)
    for s in range(T - 1, -1, -1):
        m = active(lay, s)
        n_next = active(lay, s + 1)
        gates_t = gates + offset(lay, s) * G
        if gru:
            hgates_t = hgates + offset(lay, s) * G
        threads = row_threads(m, parallel)
        if threads > 1:
            for part in prange(threads, num_threads=threads, schedule="static"):
                backward_rows(cell, lay, s, split_rows(m, threads, part),
                              split_rows(m, threads, part + 1), <const floating*> a.dout,
                              <const floating*> a.zero_row, hs + offset(lay, s) * H,
                              hs + offset(lay, s + 1) * H, h_last,
                              cs + offset(lay, s) * H if has_c else NULL,
                              cs + offset(lay, s + 1) * H if has_c else NULL, c_last, n_next,
                              gates_t, hgates_t, dh_rec, dc, <const floating*> a.dcells)
        else:
            backward_rows(cell, lay, s, 0, m, <const floating*> a.dout,
                          <const floating*> a.zero_row, hs + offset(lay, s) * H,
                          hs + offset(lay, s + 1) * H, h_last,
                          cs + offset(lay, s) * H if has_c else NULL,
                          cs + offset(lay, s + 1) * H if has_c else NULL, c_last, n_next,
                          gates_t, hgates_t, dh_rec, dc, <const floating*> a.dcells)
        # dh_rec[:m] = dG_t @ Wh.T; the GRU's rows left dh * z there, its product adds
        # (step 0's makes dh0 only)
        if s > 0 or not a.dh0_unused:
            step_product(m, H, G, dGh + offset(lay, s) * G, Wh, not a.wh_t, WpT, gru, dh_rec,
                         a_scratch, parallel)
    if dh_rec != <floating*> a.dh0:
        scatter_state(lay, H, dh_rec, <floating*> a.dh0)
        if has_c:
            scatter_state(lay, H, dc, <floating*> a.dc0)
    # the deferred GEMMs over all packed rows: dWx = x.T @ dG, dWh = h_prev.T @ dGh,
    # dx = dG @ Wx.T (h_prev of every row is the first N rows of hs). A zero start's step 0
    # rows (h_{-1} = 0) add nothing to dWh unless dGh is inf or NaN there: dWh from row k0
    # (those rows' part of dWh is h_{-1}.T (H, k0) @ dGh (k0, G))
    k0 = offset(lay, 1)
    if not (k0 * H * G >= ZERO_START_MIN_WORK
            and zero_product(H, <int> k0, G, hs, <const floating*> dGh)):
        k0 = 0
    xs = steps_packed(lay, 0, T, D, <const floating*> a.x, xbuf)
    # dx packed first where it is gathered or added to the other direction's
    dx_packed = xbuf if xs == xbuf or a.add_dx else <floating*> a.dx
    if dGp != NULL:
        # our kernel rather than BLAS (BLAS's threads cost more than they bring at these
        # sizes); OpenMP threads when large: these products end the call, no serial step
        # loop follows them (at 2 threads, medium LSTM forward+backward 1.12x faster so)
        dGh_packed = dGp                                    # dGh's rows k0.. packed
        if gru or k0 == 0:
            pack_panels(<int> rows, G, gates, G, False, dGp)          # dG as the right operand
            packed_gemm(D, G, <int> rows, xs, True, dGp, False, dWx, deferred_scratch,
                        threads_for_once(rows * G * D) and not a.serial)
            if gru:                                                   # (dG is done with)
                pack_panels(<int> (rows - k0), G, dGh + k0 * G, G, False, dGp)
        else:           # dG packed in two parts, step 0's rows and the rest (dWh's)
            dGh_packed = dGp + packed_size(floating is float, <int> k0, G)
            pack_panels(<int> k0, G, gates, G, False, dGp)
            pack_panels(<int> (rows - k0), G, gates + k0 * G, G, False, dGh_packed)
            packed_gemm(D, G, <int> k0, xs, True, dGp, False, dWx, deferred_scratch, False)
            if rows > k0:
                packed_gemm(D, G, <int> (rows - k0), xs + k0 * D, True, dGh_packed, True, dWx,
                            deferred_scratch, threads_for_once(rows * G * D) and not a.serial)
        if rows > k0:
            packed_gemm(H, G, <int> (rows - k0), hs + k0 * H, True, dGh_packed, False, dWh,
                        deferred_scratch, threads_for_once(rows * G * H) and not a.serial)
        if not a.dx_unused:
            pack_panels(G, D, Wx, D if a.wx_t else G, not a.wx_t, WxTp)  # Wx.T
            packed_gemm(<int> rows, D, G, gates, False, WxTp, False, dx_packed,
                        deferred_scratch, threads_for_once(rows * G * D) and not a.serial)
    else:
        gemm(True, False, D, G, <int> rows, <floating> 1, xs, D, gates, G, <floating> 0,
             dWx, G)
        if rows > k0:
            gemm(True, False, H, G, <int> (rows - k0), <floating> 1, hs + k0 * H, H,
                 dGh + k0 * G, G, <floating> 0, dWh, G)
        if not a.dx_unused:
            gemm(False, not a.wx_t, <int> rows, D, G, <floating> 1, gates, G, Wx,
                 D if a.wx_t else G, <floating> 0, dx_packed, D)
    if rows == k0:                                          # one step from a zero start
        memset(dWh, 0, <size_t> H * G * sizeof(floating))
    if dx_packed == xbuf and not a.dx_unused:
        scatter_steps(lay, D, xbuf, <floating*> a.dx, a.add_dx)
    memset(db, 0, <size_t> G * sizeof(floating))
    add_column_sums(rows, G, gates, G, db)                  # db = dG.sum(axis=0)
    if gru:                                                 # db_hn = dGh[:, 2H:].sum(axis=0)
        memset(a.db_hn, 0, <size_t> H * sizeof(floating))
        add_column_sums(rows, H, dGh + 2 * H, G, <floating*> a.db_hn)


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
    ALIGN_SLACK = 16    # values before a scratch block's first cache line (64 bytes or more)


cdef inline char* cache_line(void* p) noexcept nogil:
    """p rounded up to a 64-byte boundary. NumPy's data sits 16 bytes past one, so the
    packed weights' 32-byte loads straddled two lines every other load: aligned, the
    per-step products ran 4-15% faster (batch 1 and 32, float32, in one process)."""
    return <char*> ((<size_t> p + 63) & ~(<size_t> 63))


cdef inline Py_ssize_t carved_values(Py_ssize_t n) noexcept nogil:
    """Values a buffer of n takes in a scratch block: rounded up to 16, then a red zone."""
    return (n + 15) // 16 * 16 + RED_ZONE


cdef inline void* carve(bint is_float, char* scratch, Py_ssize_t* used,
                        Py_ssize_t n) noexcept nogil:
    """The next n values of a scratch block (NULL for n = 0), followed up to
    carved_values(n) by padding and a red zone poisoned for AddressSanitizer (the plan's
    total sizes the block; the caller unpoisons it after the kernel)."""
    if n == 0:
        return NULL
    cdef size_t item = 4 if is_float else 8
    cdef char* p = scratch + used[0] * item
    rf_asan_poison(p + n * item, <size_t> (carved_values(n) - n) * item)
    used[0] += carved_values(n)
    return p


# The buffer plans: how many values each internal buffer of a call takes (0: not used).
# One scratch block holds them all, carved in this order.

cdef struct ForwardPlan:
    Py_ssize_t gates        # inference only (training: the workspace's)
    Py_ssize_t hgates
    Py_ssize_t hs
    Py_ssize_t cs
    Py_ssize_t xbuf
    Py_ssize_t Wp
    Py_ssize_t WxP
    Py_ssize_t a_scratch


cdef struct BackwardPlan:
    Py_ssize_t zero_row
    Py_ssize_t states       # dh (and dc) in sorted row order, with lengths
    Py_ssize_t xbuf
    Py_ssize_t WpT
    Py_ssize_t a_scratch
    Py_ssize_t dGp
    Py_ssize_t WxTp


cdef inline Py_ssize_t planned(Py_ssize_t n) noexcept:
    return carved_values(n) if n > 0 else 0


cdef Py_ssize_t forward_plan_values(ForwardPlan* p) noexcept:
    """Values of the scratch block that holds a forward plan's buffers."""
    return (ALIGN_SLACK + planned(p.gates) + planned(p.hgates) + planned(p.hs)
            + planned(p.cs) + planned(p.xbuf) + planned(p.Wp) + planned(p.WxP)
            + planned(p.a_scratch))


cdef Py_ssize_t backward_plan_values(BackwardPlan* p) noexcept:
    """Values of the scratch block that holds a backward plan's buffers."""
    return (ALIGN_SLACK + planned(p.zero_row) + planned(p.states) + planned(p.xbuf)
            + planned(p.WpT) + planned(p.a_scratch) + planned(p.dGp) + planned(p.WxTp))


cdef struct Call:
    # One prepared forward or backward: what its loop needs, the scratch carved.
    Cell cell
    Layout lay
    ForwardArgs fa
    BackwardArgs ba
    bint backward
    bint is_float
    char* base          # the scratch block (unpoisoned after the loop)
    Py_ssize_t used


cdef void carve_forward(Call* c, ForwardPlan* plan, scratch):
    """Carves the plan's buffers from ``scratch`` (a workspace buffer already set in the
    arguments is kept)."""
    cdef ForwardArgs* a = &c.fa
    cdef bint is_float = c.is_float
    c.base = cache_line(data(scratch))         # (carved_values keeps each buffer aligned)
    c.used = 0
    cdef void* p
    p = carve(is_float, c.base, &c.used, plan.gates)
    if plan.gates:
        a.gates = p
    p = carve(is_float, c.base, &c.used, plan.hgates)
    if plan.hgates:
        a.hgates = p
    p = carve(is_float, c.base, &c.used, plan.hs)
    if plan.hs:
        a.hs = p
    p = carve(is_float, c.base, &c.used, plan.cs)
    if plan.cs:
        a.cs = p
    a.xbuf = carve(is_float, c.base, &c.used, plan.xbuf)
    a.Wp = carve(is_float, c.base, &c.used, plan.Wp)
    a.WxP = carve(is_float, c.base, &c.used, plan.WxP)
    a.a_scratch = carve(is_float, c.base, &c.used, plan.a_scratch)


cdef void carve_backward(Call* c, BackwardPlan* plan, scratch):
    """Carves the plan's buffers from ``scratch``."""
    cdef BackwardArgs* a = &c.ba
    cdef bint is_float = c.is_float
    c.base = cache_line(data(scratch))         # (carved_values keeps each buffer aligned)
    c.used = 0
    a.zero_row = carve(is_float, c.base, &c.used, plan.zero_row)
    a.dh_rec, a.dc = a.dh0, a.dc0                   # in place, but with lengths: sorted
    if plan.states:
        a.dh_rec = carve(is_float, c.base, &c.used, plan.states)
        if a.dc0 != NULL:
            a.dc = <char*> a.dh_rec + <size_t> c.cell.H * c.lay.B * (4 if is_float else 8)
    a.xbuf = carve(is_float, c.base, &c.used, plan.xbuf)
    a.WpT = carve(is_float, c.base, &c.used, plan.WpT)
    a.a_scratch = carve(is_float, c.base, &c.used, plan.a_scratch)
    a.dGp = carve(is_float, c.base, &c.used, plan.dGp)
    a.WxTp = carve(is_float, c.base, &c.used, plan.WxTp)
    # the deferred products share the per-step products' A scratch (sized for both)
    a.deferred_scratch = a.a_scratch if a.dGp != NULL else NULL


cdef void run_call(Call* c) noexcept nogil:
    """A prepared call's loop, with denormals flushed to zero (restored afterwards)."""
    cdef size_t item = 4 if c.is_float else 8
    cdef unsigned int csr = rf_denormals_off()
    if c.backward:
        memset(c.ba.zero_row, 0, <size_t> c.cell.H * item)
        if c.is_float:
            backward_loop(<float> 0, c.cell, &c.lay, &c.ba)
        else:
            backward_loop(<double> 0, c.cell, &c.lay, &c.ba)
    else:
        if c.is_float:
            forward_loop(<float> 0, c.cell, &c.lay, &c.fa)
        else:
            forward_loop(<double> 0, c.cell, &c.lay, &c.fa)
    rf_denormals_restore(csr)
    rf_asan_unpoison(c.base, <size_t> c.used * item)


@cython.auto_pickle(False)
cdef class Prepared:
    """A call ready to run (its Call, and the arrays its pointers point into), and what it
    returns; ``runs`` is False when there is nothing to compute (no steps)."""
    cdef Call call
    cdef bint runs
    cdef object keep            # the arrays the Call points into
    cdef object scratch         # its scratch block (a view of a lent or pooled buffer)
    cdef object lent            # SharedBuffers' buffers to give back after the call
    cdef object workspace_back  # a consumed workspace whose lent buffers go back too
    cdef object result


cdef void set_serial(Call* c, bint serial) noexcept nogil:
    c.fa.serial = serial
    c.ba.serial = serial


cdef object finish(Prepared p):
    """After the loop: buffers lent for the call go back; returns the call's result."""
    p.keep = p.scratch = None
    if p.lent:
        _shared.give_back(p.lent)
    if p.workspace_back is not None:
        _give_back_workspace(p.workspace_back)
    return p.result


cdef object run_one(Prepared p):
    """Runs one prepared call without the GIL; returns its result."""
    if p.runs:
        with nogil:
            rf_call_begin()             # (the thread policy counts the calls in flight)
            if rf_cold_call_solo(call_work(&p.call)):
                set_serial(&p.call, True)
            run_call(&p.call)
            rf_call_end()
    return finish(p)


cdef inline long long call_work(Call* c) noexcept nogil:
    """Multiply-adds of a call's products (its forward's; a backward's are about twice)."""
    return <long long> c.lay.T * c.lay.B * c.cell.G * (c.cell.D + c.cell.H)


# The two directions of a bidirectional call run side by side from this many multiply-adds
# each (see run_two), and, while the second thread is awake, from small_pair_min_work each
# (module-level values so that the thresholds can be measured again: _set_pair_min_work)
cdef long long pair_min_work = 1 << 19
# (a tiny RNN direction, 64k multiply-adds, gained 1.02-1.19x side by side in a steady loop:
# the fork and join's ~1 us is a third of its work; the tiny LSTM, 256k, 1.43-1.48x)
cdef long long small_pair_min_work = 1 << 17


def _set_pair_min_work(long long work, small=False):
    """Sets run_two's threshold (multiply-adds per direction; ``small``: the threshold of
    small pairs, which run side by side only while the second thread is awake); returns the
    previous one."""
    global pair_min_work, small_pair_min_work
    if small:
        previous = small_pair_min_work
        small_pair_min_work = work
    else:
        previous = pair_min_work
        pair_min_work = work
    return previous


cdef tuple run_two(Prepared p, Prepared q):
    """Runs two independent prepared calls (a bidirectional layer's directions): side by
    side on two threads, each single-threaded, when the thread policy gives the call two and
    each has at least pair_min_work multiply-adds (the directions share no step, so there
    is no barrier per step); from small_pair_min_work, only while the second thread is awake
    and side by side pays (rf_small_pair_shares: waking it costs tens of us, more than a
    small direction takes); else one after the other, each with the threads the policy
    gives it. The side-by-side region is timed as the products' are (rf_team_end): a late
    thread (another process on its core) sends the next calls solo; a small pair's, on a
    running mean of what side by side saved against the directions' expected own times
    (rf_small_pair_end), sends the next small pairs one after the other. Returns both results."""
    cdef Call* calls[2]
    cdef int i
    cdef rf_team_timer timer
    if not (p.runs and q.runs):
        return run_one(p), run_one(q)
    calls[0], calls[1] = &p.call, &q.call
    cdef bint cold_solo, side_by_side, small
    cdef long long least
    with nogil:
        rf_call_begin()
        least = min(call_work(calls[0]), call_work(calls[1]))
        cold_solo = rf_cold_call_solo(call_work(calls[0]) + call_work(calls[1]))
        small = least < pair_min_work
        side_by_side = (not cold_solo and rf_team_threads() >= 2
                        and (not small or (least >= small_pair_min_work
                                           and rf_small_pair_shares())))
        if cold_solo or side_by_side:       # (each direction on one thread)
            set_serial(calls[0], True)
            set_serial(calls[1], True)
        if side_by_side:
            rf_team_start(&timer, 2)
            for i in prange(2, num_threads=2, schedule="static"):
                run_call(calls[i])
                rf_team_done(&timer)
            if small:
                rf_small_pair_end(&timer, call_work(calls[0]), call_work(calls[1]))
            else:
                rf_team_end(&timer)
        else:
            run_call(calls[0])
            run_call(calls[1])
        rf_call_end()
    return finish(p), finish(q)


# ----------------------------------------------------------------------------- Python faces

cdef struct Dims:
    Py_ssize_t B, T, D, H, G      # batch, seq_len, input, hidden, gates x hidden


cdef bint f_ordered(W, str name) except -1:
    """Whether a weight the kernels get lies in memory F-ordered (as its transpose's rows:
    rnnfast.torch hands torch's weight_ih / weight_hh over as ``.T`` views, read in place);
    False for a C-contiguous one (either, for one of a single row or column). Anything else
    is an error: the kernels read W's memory as one of the two."""
    cdef cnp.ndarray w = <cnp.ndarray> W
    if cnp.PyArray_IS_C_CONTIGUOUS(w):
        return False
    if cnp.PyArray_IS_F_CONTIGUOUS(w):
        return True
    raise ValueError(f"{name} must be C-contiguous or F-contiguous (the transpose of a "
                     f"C-contiguous array), got strides {W.strides} for shape {W.shape}")


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


# rf_packed_gemm's scratch for the interleaved rows of its left operand: at most RF_K_GROUP *
# RF_MC * RF_KC
A_PACKED_SIZE = RF_K_GROUP * RF_MC * RF_KC


cdef bint use_packed(long long step_work, bint is_float):
    """Whether a call's products run in rf_packed_gemm. float64 problems with large
    per-step products stay in BLAS: there dgemm beat our double micro-kernel (large
    float64 cells 0.83-0.97x the NumPy twin with it)."""
    if not is_float and step_work >= RF_PARALLEL_MIN_WORK:
        return False
    return step_work <= packed_max_work



cdef inline Py_ssize_t a_packed_size(Py_ssize_t max_rows, Py_ssize_t max_k) noexcept:
    """rf_packed_gemm's scratch for products of at most max_rows rows and max_k terms."""
    return min(<Py_ssize_t> RF_MC, max_rows) * min(<Py_ssize_t> RF_K_GROUP * RF_KC, max_k)


cdef inline cnp.ndarray empty(int nd, cnp.npy_intp* dims, bint is_float):
    """np.empty through the C API (a fifth of np.empty's cost per call; a tiny forward
    allocates four arrays)."""
    return cnp.PyArray_EMPTY(nd, dims, cnp.NPY_FLOAT32 if is_float else cnp.NPY_FLOAT64, 0)


cdef cnp.ndarray aligned_empty(cnp.npy_intp n, bint is_float):
    """A flat empty(1, [n]) whose data starts on a cache line (see cache_line): a view into
    ALIGN_SLACK more values."""
    cdef cnp.npy_intp m = n + ALIGN_SLACK
    cdef cnp.ndarray flat = empty(1, &m, is_float)
    cdef Py_ssize_t skip = ((cache_line(data(flat)) - <char*> data(flat))
                            // (4 if is_float else 8))
    return flat[skip:skip + n]


cdef enum:
    POOL_MIN_BYTES = 128 * 1024     # glibc's initial threshold for malloc through mmap
    BLAS_INDEX_MAX = 2147483647     # elements of the largest matrix 32-bit BLAS indexes


class SharedBuffers:
    """Flat buffers lent to calls that have no pool of their own (rnnfast.functional, eval
    layers), so that they too reuse mapped pages: allocated per call, the functional face's
    fwd+bwd took 4.2-4.7 ms with ~1,200 page faults against 2.3 ms for a layer. A call
    takes what it needs (the best fit among the free buffers, or a new one) and gives its
    scratch back when it ends; a training forward's workspace buffers come back when its
    backward has consumed them (a workspace never used dies with its buffers). A buffer
    comes back only when nothing else refers to it (no view of it is alive), and at most
    MAX_COUNT buffers of MAX_BYTES in all are kept: ``release()`` frees them. Safe for
    concurrent calls: a buffer is lent to one call at a time."""

    MAX_COUNT = 16
    MAX_BYTES = 256 * 2**20

    def __init__(self):
        import threading
        self._free = []
        self._lock = threading.Lock()

    def take(self, cnp.npy_intp n, bint is_float):
        """A flat float32 (or float64) buffer of at least n values, for this caller only."""
        cdef cnp.ndarray flat, best = None
        cdef Py_ssize_t i, best_i = -1
        with self._lock:
            for i in range(len(self._free)):
                flat = self._free[i]
                if ((cnp.PyArray_ITEMSIZE(flat) == 4) == is_float and cnp.PyArray_DIM(flat, 0) >= n
                        and (best is None or cnp.PyArray_DIM(flat, 0) < cnp.PyArray_DIM(best, 0))):
                    best, best_i = flat, i
            if best is not None:
                del self._free[best_i]
                return best
        return empty(1, &n, is_float)

    def give_back(self, list lent):
        """Return the buffers of ``lent`` (emptied) that nothing else refers to."""
        cdef cnp.ndarray flat
        while lent:
            flat = lent.pop()
            if Py_REFCNT(flat) != 1:    # a view of it is alive somewhere: not ours to reuse
                continue
            with self._lock:
                if (len(self._free) < self.MAX_COUNT and
                        sum(f.nbytes for f in self._free) + flat.nbytes <= self.MAX_BYTES):
                    self._free.append(flat)

    def release(self):
        """Free every kept buffer."""
        with self._lock:
            self._free.clear()

    def kept_bytes(self):
        with self._lock:
            return sum(f.nbytes for f in self._free)


_shared = SharedBuffers()


def release_shared_buffers():
    """Free the buffers kept for calls without a pool of their own (rnnfast.functional,
    eval layers); the next calls allocate them again."""
    _shared.release()


cdef cnp.ndarray pooled(dict pool, str name, int nd, cnp.npy_intp* dims, bint is_float,
                        list lent=None):
    """Like empty(nd, dims), but with a pool (BufferedKernels': buffers kept between one
    layer's calls) a view of the first values of the flat buffer it keeps under ``name``,
    grown when too small; without a pool but with a list ``lent``, a view of a buffer lent
    by SharedBuffers (appended to ``lent``, to be given back). Fresh pages cost a fault each
    (clear and map): per-call allocation of a training workspace spent 17-32% of a medium
    fwd+bwd in the kernel."""
    cdef cnp.npy_intp n = 1
    cdef int i
    for i in range(nd):
        n *= dims[i]
    # small arrays come from malloc's heap without faults, and pooling costs ~1 us each
    if n * (4 if is_float else 8) < POOL_MIN_BYTES or (pool is None and lent is None):
        return empty(nd, dims, is_float)
    cdef cnp.ndarray flat
    if pool is None:
        flat = _shared.take(n, is_float)
        lent.append(flat)
    else:
        flat = pool.get(name)
        if (flat is None or cnp.PyArray_DIM(flat, 0) < n
                or (cnp.PyArray_ITEMSIZE(flat) == 4) != is_float):
            flat = empty(1, &n, is_float)
            pool[name] = flat
    return flat[:n].reshape([dims[i] for i in range(nd)])


def _give_back_workspace(workspace):
    """A consumed workspace's lent buffers back to SharedBuffers (its views dropped first)."""
    lent = workspace.pop("lent", None)
    if lent is not None:
        for key in ("gates", "hs", "cs"):
            workspace[key] = None
        _shared.give_back(lent)


_NONLINEARITY_KINDS = {"tanh": KIND_RNN_TANH, "relu": KIND_RNN_RELU,
                       "sigmoid": KIND_RNN_SIGMOID}


def sequence_steps(lengths, int T):
    """What the loops need of a batch's sequence lengths (checked: one int per row, each in
    1 .. T), or None when every row has all T steps (the full-length loops run).

    Returns ``(order, lengths, batch_sizes, offsets)``: the rows sorted longest first (a
    stable sort), their lengths, the rows of each step (T + 1 entries, the last 0) and the
    packed row of each step's first row (T + 1 entries, the last the total), as in
    PyTorch's PackedSequence. Computed once per call, for every layer and direction (a
    counting sort: O(batch + T)). False when a length is not in 1 .. T (unchecked lengths:
    rnnfast._checks.check_lengths says what is wrong)."""
    if lengths is None:
        return None
    cdef cnp.ndarray lens
    if (type(lengths) is cnp.ndarray and cnp.PyArray_TYPE(<cnp.ndarray> lengths) == cnp.NPY_INTP
            and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray> lengths)
            and cnp.PyArray_ISALIGNED(<cnp.ndarray> lengths)):
        lens = <cnp.ndarray> lengths            # (a layer's checked lengths: as they are)
    else:
        lens = np.ascontiguousarray(lengths, np.intp)
    cdef Py_ssize_t B = lens.shape[0], i, s, n
    cdef const Py_ssize_t* L = <const Py_ssize_t*> cnp.PyArray_DATA(lens)
    cdef bint full = True
    for i in range(B):
        if L[i] < 1 or L[i] > T:
            return False
        if L[i] != T:
            full = False
    if full:
        return None                         # (B = 0 too)
    cdef cnp.npy_intp dims[1]
    dims[0] = B
    cdef cnp.ndarray order = cnp.PyArray_EMPTY(1, dims, cnp.NPY_INT32, 0)
    cdef cnp.ndarray sorted_lengths = cnp.PyArray_EMPTY(1, dims, cnp.NPY_INT32, 0)
    dims[0] = T + 1
    cdef cnp.ndarray batch_sizes = cnp.PyArray_ZEROS(1, dims, cnp.NPY_INT32, 0)
    cdef cnp.ndarray offsets = cnp.PyArray_EMPTY(1, dims, cnp.NPY_INTP, 0)
    cdef int* o = <int*> cnp.PyArray_DATA(order)
    cdef int* sl = <int*> cnp.PyArray_DATA(sorted_lengths)
    cdef int* bs = <int*> cnp.PyArray_DATA(batch_sizes)
    cdef Py_ssize_t* off = <Py_ssize_t*> cnp.PyArray_DATA(offsets)
    # bs[l] = rows of length l, then the first sorted position of each length (longest
    # first), then each row placed in its length's next position (stable)
    for i in range(B):
        bs[L[i] - 1] += 1
    cdef Py_ssize_t pos = 0
    for s in range(T - 1, -1, -1):
        n = bs[s]
        bs[s] = pos
        pos += n
    for i in range(B):
        n = bs[L[i] - 1]
        o[n] = <int> i
        sl[n] = <int> L[i]
        bs[L[i] - 1] += 1
    # rows of step s: those longer than s; packed offsets their running sum
    n = 0
    for s in range(T):
        while n < B and sl[B - 1 - n] <= s:
            n += 1
        bs[s] = <int> (B - n)
    bs[T] = 0
    off[0] = 0
    for s in range(T):
        off[s + 1] = off[s] + bs[s]
    return order, sorted_lengths, batch_sizes, offsets


cdef Layout layout_of(int T, int B, bint batch_first, int out_width, int out_col,
                      bint reverse, steps):
    """The loops' Layout of a call; ``steps``: sequence_steps' result (kept alive by the
    caller for the call), or None."""
    cdef Layout lay = make_layout(T, B, batch_first, out_width)
    lay.out_col = out_col
    lay.reverse = reverse
    if steps is not None:
        lay.order = <const int*> data(steps[0])
        lay.lengths = <const int*> data(steps[1])
        lay.batch_sizes = <const int*> data(steps[2])
        lay.offsets = <const Py_ssize_t*> data(steps[3])
    return lay


cdef inline Py_ssize_t packed_rows(Py_ssize_t T, Py_ssize_t B, steps):
    """Rows of all steps together: T * B, or fewer with lengths."""
    return T * B if steps is None else (<cnp.ndarray> steps[3])[T]


def _forward(int kind, x, h0, c0, Wx, Wh, b, b_hn, bint batch_first, bint training,
             dict pool=None, steps=None, bint reverse=False, out=None, int out_col=0,
             cells_out=None):
    """Allocates outputs and buffers, runs forward_loop; returns
    ``(out, h_n, c_n, workspace)``. See prepare_forward."""
    return run_one(prepare_forward(kind, x, h0, c0, Wx, Wh, b, b_hn, batch_first, training,
                                   pool, steps, reverse, out, out_col, cells_out))


cdef Prepared prepare_forward(int kind, x, h0, c0, Wx, Wh, b, b_hn, bint batch_first,
                              bint training, dict pool, steps, bint reverse, out,
                              int out_col, cells_out):
    """Allocates outputs and buffers of a forward, ready to run forward_loop; its result
    ``(out, h_n, c_n, workspace)`` (c_n None but for the LSTM). ``pool``: see pooled();
    without one, the buffers are lent by SharedBuffers. ``steps``: sequence_steps() of the
    batch's lengths, or None; ``reverse``: the reverse direction; ``out``: the output array
    to write into, at columns ``out_col`` .. ``out_col + H`` (a bidirectional layer's;
    zeros where rows have ended, when ``steps``), else a new one. ``cells_out`` (LSTM): an
    array like ``out`` that gets every c_t in the same columns."""
    cdef bint has_c = kind == KIND_LSTM      # the cell carries a cell state c
    cdef bint gru = kind == KIND_GRU
    cdef bint is_float = Wx.dtype.itemsize == 4    # (checked arrays: float32 or float64)
    cdef Dims d = dims_of(x, Wh, batch_first)
    cdef Py_ssize_t B = d.B, T = d.T, D = d.D, H = d.H, G = d.G, chunk, N
    cdef cnp.npy_intp dims[3]
    cdef Cell cell = Cell(kind, D, H, G)
    cdef ForwardPlan plan
    cdef ForwardArgs a
    dt = Wx.dtype
    if out is None:
        dims[0], dims[1], dims[2] = (B, T, H) if batch_first else (T, B, H)  # out: like x
        # rows past their end are never written: zeros
        out = empty(3, dims, is_float) if steps is None else cnp.PyArray_ZEROS(
            3, dims, cnp.NPY_FLOAT32 if is_float else cnp.NPY_FLOAT64, 0)
    cdef Layout lay = layout_of(T, B, batch_first, out.shape[2], out_col, reverse, steps)
    N = packed_rows(T, B, steps)
    cdef bint packed = use_packed(<long long> B * H * G, is_float)   # else BLAS
    chunk = max(1, min(T, (CHUNK_ROWS if packed else BLAS_CHUNK_ROWS) // B))
    gates = hgates = hs = cs = workspace = None
    # buffers lent by SharedBuffers when there is no pool: the workspace's, the scratch's
    kept = [] if pool is None else None
    lent = [] if pool is None else None
    if training:        # the BPTT workspace; in inference these come from the scratch block
        if steps is None:
            dims[0], dims[1], dims[2] = T, B, G
            gates = pooled(pool, "gates", 3, dims, is_float, kept)
            hgates = pooled(pool, "hgates", 3, dims, is_float, kept) if gru else None
            dims[0], dims[1], dims[2] = T + 1, B, H
            hs = pooled(pool, "hs", 3, dims, is_float, kept)
            cs = pooled(pool, "cs", 3, dims, is_float, kept) if has_c else None
        else:           # packed rows: (N, G) gates; (N + B, H) states
            dims[0], dims[1] = N, G
            gates = pooled(pool, "gates", 2, dims, is_float, kept)
            hgates = pooled(pool, "hgates", 2, dims, is_float, kept) if gru else None
            dims[0], dims[1] = N + B, H
            hs = pooled(pool, "hs", 2, dims, is_float, kept)
            cs = pooled(pool, "cs", 2, dims, is_float, kept) if has_c else None
        workspace = {"backend": "cython", "cell": KINDS[kind].split("_")[0],
                     "batch_first": batch_first, "dims": (B, T, H), "gates": gates,
                     "hs": hs, "cs": cs}
        if gru:
            workspace["hgates"] = hgates
        if steps is not None or reverse or out_col or lay.out_width != H:
            workspace.update(steps=steps, reverse=reverse, out_col=out_col,
                             out_width=lay.out_width)
        if kept:
            workspace["lent"] = kept
        if kind <= KIND_RNN_SIGMOID:
            workspace["nonlinearity"] = KINDS[kind].split("_")[1]
    cdef Prepared prep = Prepared()
    if T == 0:
        prep.runs = False
        prep.result = (out, _state_or_zeros(h0, B, H, dt),
                       _state_or_zeros(c0, B, H, dt) if has_c else None, workspace)
        return prep
    plan.gates = 0 if training else chunk * B * G
    plan.hgates = 0 if training or not gru else B * G
    plan.hs = 0 if training else 3 * B * H              # two ping-pong blocks, the last
    plan.cs = 0 if training or not has_c else 3 * B * H
    plan.xbuf = chunk * B * D if gathers(&lay) else 0               # x packed
    plan.Wp = packed_size(is_float, H, G) if packed else 0          # Wh packed
    plan.WxP = packed_size(is_float, D, G) if packed else 0         # Wx packed
    plan.a_scratch = a_packed_size(max(B, chunk * B), max(H, D)) if packed else 0
    dims[0] = forward_plan_values(&plan)
    scratch = pooled(pool, "forward scratch", 1, dims, is_float, lent)
    dims[0], dims[1] = B, H
    h_n = empty(2, dims, is_float)
    c_n = empty(2, dims, is_float) if has_c else None
    a.x, a.h0, a.c0 = data(x), data(h0), data(c0)
    a.Wx, a.Wh, a.b, a.b_hn = data(Wx), data(Wh), data(b), data(b_hn)
    a.wx_t, a.wh_t = f_ordered(Wx, "Wx"), f_ordered(Wh, "Wh")
    a.out, a.h_n, a.c_n, a.c_out = data(out), data(h_n), data(c_n), data(cells_out)
    a.gates, a.hgates, a.hs, a.cs = data(gates), data(hgates), data(hs), data(cs)
    a.chunk, a.training, a.serial, a.prepacked = chunk, training, False, False
    prep.call.cell, prep.call.lay, prep.call.fa = cell, lay, a
    prep.call.backward, prep.call.is_float = False, is_float
    carve_forward(&prep.call, &plan, scratch)
    prep.runs = True
    prep.keep = (x, h0, c0, Wx, Wh, b, b_hn, out, h_n, c_n, cells_out, gates, hgates, hs, cs,
                 steps)
    prep.scratch, prep.lent = scratch, lent
    prep.result = (out, h_n, c_n, workspace)
    return prep


def _backward(int kind, dout, dh_n, dc_n, x, Wx, Wh, workspace, bint batch_first,
              dict pool=None, dx=None, dcells=None, tuple grads_out=None,
              bint need_dx=True, bint need_dh0=True):
    """Allocates gradients and scratch, runs backward_loop; returns
    ``(dx, dh0, dc0, dWx, dWh, db, db_hn)``. See prepare_backward."""
    return run_one(prepare_backward(kind, dout, dh_n, dc_n, x, Wx, Wh, workspace,
                                    batch_first, pool, dx, dcells, grads_out, need_dx,
                                    need_dh0))


cdef inline object _unused_dx(dx, x, dt, bint need_dx):
    """A backward's dx with no steps: zeros, or the one given, or None when not needed."""
    if dx is not None or not need_dx:
        return dx
    return np.zeros(x.shape, dt)


cdef Prepared prepare_backward(int kind, dout, dh_n, dc_n, x, Wx, Wh, workspace,
                               bint batch_first, dict pool, dx, dcells,
                               tuple grads_out=None, bint need_dx=True,
                               bint need_dh0=True):
    """Allocates gradients and scratch of a backward, ready to run backward_loop; its result
    ``(dx, dh0, dc0, dWx, dWh, db, db_hn)`` (dc0 None but for the LSTM, db_hn but for the
    GRU). ``pool``: see pooled(); without one, the scratch is lent by SharedBuffers, and the
    workspace's lent buffers go back to it afterwards. ``dx``: add this direction's input
    gradient into that array (the other direction's) instead of a new one. The forward's
    lengths, direction and output columns come with the workspace; ``dout`` is the
    gradient of that whole output, ``dcells`` (LSTM) that of the cells_out. ``grads_out``:
    the arrays to write the parameter gradients into, ``(dWx, dWh, db(, db_hn))`` (checked
    by grads_ready: the parameters' shapes and dtype, C-contiguous, overlapping nothing the
    call reads), instead of new ones. ``need_dx`` False: no input gradient (dx None, or the
    given one unchanged); ``need_dh0`` False: dh0 is left unfinished (the caller drops it;
    dc0 is still made)."""
    if workspace["hs"] is None:
        raise ValueError("this workspace was already used by a backward call")
    cdef bint has_c = kind == KIND_LSTM      # the cell carries a cell state c
    cdef bint gru = kind == KIND_GRU
    cdef bint is_float = Wx.dtype.itemsize == 4    # (checked arrays: float32 or float64)
    cdef Dims d = dims_of(x, Wh, batch_first)
    cdef Py_ssize_t B = d.B, T = d.T, D = d.D, H = d.H, G = d.G, N
    cdef cnp.npy_intp dims[1]
    cdef Cell cell = Cell(kind, D, H, G)
    cdef BackwardPlan plan
    cdef BackwardArgs a
    dt = Wx.dtype
    steps = workspace.get("steps")
    cdef Layout lay = layout_of(T, B, batch_first, workspace.get("out_width", H),
                                workspace.get("out_col", 0), workspace.get("reverse", False),
                                steps)
    N = packed_rows(T, B, steps)
    dh0 = _state_or_zeros(dh_n, B, H, dt)           # dh_n, becomes dh0
    dc0 = _state_or_zeros(dc_n, B, H, dt) if has_c else None     # dc_n, becomes dc0
    cdef bint add_dx = dx is not None and need_dx
    cdef Prepared prep = Prepared()
    if grads_out is not None:
        dWx, dWh, db = grads_out[0], grads_out[1], grads_out[2]
        db_hn = grads_out[3] if gru else None
    if T == 0:
        prep.runs = False
        if grads_out is None:
            prep.result = (_unused_dx(dx, x, dt, need_dx), dh0, dc0,
                           np.zeros(Wx.shape, dt), np.zeros(Wh.shape, dt), np.zeros(G, dt),
                           np.zeros(H, dt) if gru else None)
        else:
            for g in grads_out:
                g.fill(0)
            prep.result = ((_unused_dx(dx, x, dt, need_dx), dh0, dc0)
                           + (dWx, dWh, db, db_hn))
        return prep
    # every value of these is written by the kernels (dx's rows past their end: zeros)
    if dx is None and need_dx:
        dx = np.empty(x.shape, dt) if steps is None else np.zeros(x.shape, dt)
    if grads_out is None:
        dWx = np.empty(Wx.shape, dt)
        dWh = np.empty(Wh.shape, dt)
        dims[0] = G
        db = empty(1, dims, is_float)
        dims[0] = H
        db_hn = empty(1, dims, is_float) if gru else None
    cdef bint packed = use_packed(<long long> B * H * G, is_float)   # else BLAS
    # the deferred products too, but for large problems off the AVX-512 path: BLAS. (At 2
    # threads BLAS runs them on its own pool, whose threads then spin on the core that the
    # next call's steps need; on AVX-512 our kernel is as fast at 1 thread, on AVX2 not)
    cdef bint deferred_packed = packed and (B * H * G < RF_PARALLEL_MIN_WORK
                                            or rf_simd_current() == RF_PATH_AVX512)
    plan.zero_row = H                                               # dout's stand-in
    plan.states = 0 if steps is None else (2 if has_c else 1) * B * H   # sorted dh (dc)
    plan.xbuf = N * D if gathers(&lay) or add_dx else 0             # x (and dx) packed
    plan.WpT = packed_size(is_float, G, H) if packed else 0         # Wh.T packed
    plan.a_scratch = (a_packed_size(max(B, D, H, N), max(G, N)) if packed else 0)
    plan.dGp = packed_size(is_float, N, G) if deferred_packed else 0    # dG packed
    plan.WxTp = packed_size(is_float, G, D) if deferred_packed else 0   # Wx.T packed
    dims[0] = backward_plan_values(&plan)
    lent = [] if pool is None else None
    scratch = pooled(pool, "backward scratch", 1, dims, is_float, lent)
    hs, cs, gates = workspace["hs"], workspace["cs"], workspace["gates"]
    hgates = workspace["hgates"] if gru else None
    a.dout, a.dcells, a.x, a.Wx, a.Wh = data(dout), data(dcells), data(x), data(Wx), data(Wh)
    a.hs, a.cs, a.gates, a.hgates = data(hs), data(cs), data(gates), data(hgates)
    a.dh0, a.dc0 = data(dh0), data(dc0)
    a.dx, a.dWx, a.dWh, a.db, a.db_hn = data(dx), data(dWx), data(dWh), data(db), data(db_hn)
    a.wx_t, a.wh_t = f_ordered(Wx, "Wx"), f_ordered(Wh, "Wh")
    a.add_dx, a.serial = add_dx, False
    a.dx_unused, a.dh0_unused = not need_dx, not need_dh0
    prep.call.cell, prep.call.lay, prep.call.ba = cell, lay, a
    prep.call.backward, prep.call.is_float = True, is_float
    carve_backward(&prep.call, &plan, scratch)
    prep.runs = True
    prep.keep = (dout, dcells, x, Wx, Wh, hs, cs, gates, hgates, dh0, dc0, dx, dWx, dWh, db,
                 db_hn, steps)
    prep.scratch, prep.lent = scratch, lent
    prep.workspace_back = workspace if pool is None else None
    prep.result = (dx, dh0, dc0, dWx, dWh, db, db_hn)
    return prep


def rnn_forward(x, h0, Wx, Wh, b, nonlinearity="tanh", batch_first=True, training=True):
    """Returns ``(out, h_n, workspace)``; workspace is None unless ``training``."""
    out, h_n, _, workspace = _forward(_NONLINEARITY_KINDS[nonlinearity], x, h0, None, Wx, Wh,
                                      b, None, batch_first, training)
    return out, h_n, workspace


def rnn_backward(dout, dh_n, x, Wx, Wh, workspace, nonlinearity="tanh", batch_first=True, *,
                 bint input_grad=True):
    """Returns ``(dx, dh0, dWx, dWh, db)``, dx None without ``input_grad`` (its products
    skipped). Overwrites the workspace's gates."""
    dx, dh0, _, dWx, dWh, db, _ = _backward(_NONLINEARITY_KINDS[nonlinearity], dout, dh_n,
                                            None, x, Wx, Wh, workspace, batch_first,
                                            need_dx=input_grad)
    return dx, dh0, dWx, dWh, db


def lstm_forward(x, h0, c0, Wx, Wh, b, batch_first=True, training=True):
    """Returns ``(out, h_n, c_n, workspace)``; workspace is None unless ``training``."""
    return _forward(KIND_LSTM, x, h0, c0, Wx, Wh, b, None, batch_first, training)


def lstm_backward(dout, dh_n, dc_n, x, Wx, Wh, workspace, batch_first=True, *,
                  bint input_grad=True):
    """Returns ``(dx, dh0, dc0, dWx, dWh, db)`` (dx: see rnn_backward). Overwrites the
    workspace's gates."""
    return _backward(KIND_LSTM, dout, dh_n, dc_n, x, Wx, Wh, workspace, batch_first,
                     need_dx=input_grad)[:6]


def gru_forward(x, h0, Wx, Wh, b, b_hn, batch_first=True, training=True):
    """Returns ``(out, h_n, workspace)``; workspace is None unless ``training``."""
    out, h_n, _, workspace = _forward(KIND_GRU, x, h0, None, Wx, Wh, b, b_hn, batch_first,
                                      training)
    return out, h_n, workspace


def gru_backward(dout, dh_n, x, Wx, Wh, workspace, batch_first=True, *,
                 bint input_grad=True):
    """Returns ``(dx, dh0, dWx, dWh, db, db_hn)`` (dx: see rnn_backward). Overwrites the
    workspace's gates."""
    dx, dh0, _, dWx, dWh, db, db_hn = _backward(KIND_GRU, dout, dh_n, None, x, Wx, Wh,
                                                workspace, batch_first, need_dx=input_grad)
    return dx, dh0, dWx, dWh, db, db_hn


def _direction_forward(kind, x, states, weights, bint batch_first, bint training, steps,
                       bint reverse, out, int out_col, cells_out, dict pool):
    cdef int k = KINDS.index(kind)
    h0 = states[0]
    c0 = states[1] if k == KIND_LSTM else None
    b_hn = weights[3] if k == KIND_GRU else None
    out, h_n, c_n, workspace = _forward(k, x, h0, c0, weights[0], weights[1], weights[2],
                                        b_hn, batch_first, training, pool, steps, reverse,
                                        out, out_col, cells_out)
    return out, ((h_n, c_n) if k == KIND_LSTM else (h_n,)), workspace


def _direction_backward(kind, dout, dstates, x, Wx, Wh, workspace, bint batch_first, dx,
                        dcells, dict pool, tuple grads_out=None, bint need_dx=True,
                        bint need_dh0=True):
    cdef int k = KINDS.index(kind)
    dx, dh0, dc0, dWx, dWh, db, db_hn = _backward(
        k, dout, dstates[0], dstates[1] if k == KIND_LSTM else None, x, Wx, Wh, workspace,
        batch_first, pool, dx, dcells, grads_out, need_dx, need_dh0)
    if k == KIND_LSTM:
        return dx, (dh0, dc0), (dWx, dWh, db)
    return dx, (dh0,), ((dWx, dWh, db, db_hn) if k == KIND_GRU else (dWx, dWh, db))


def direction_forward(kind, x, states, weights, batch_first, training, steps=None,
                      reverse=False, out=None, out_col=0, cells_out=None):
    """One direction of one layer, for stacks and directions (rnnfast._sequence):
    ``kind`` a registry kind ("lstm", "rnn_tanh", ...), ``states`` and ``weights`` in the
    registry's order, ``steps`` from sequence_steps(); returns ``(out, finals, workspace)``.
    See _forward for ``reverse``, ``out``, ``out_col`` and ``cells_out``."""
    return _direction_forward(kind, x, states, weights, batch_first, training, steps,
                              reverse, out, out_col, cells_out, None)


def direction_backward(kind, dout, dstates, x, Wx, Wh, workspace, batch_first, dx=None,
                       dcells=None, need_dx=True, need_dh0=True):
    """The backward of direction_forward; returns ``(dx, dstates0, grads)`` (grads in the
    registry's parameter order). ``dx``: add the input gradient into it; ``dcells``: the
    gradient of the forward's cells_out. ``need_dx`` False: no input gradient (``dx``
    returned as given: None by default); ``need_dh0`` False: the caller drops dh0 (it is
    left unfinished, dc0 not)."""
    return _direction_backward(kind, dout, dstates, x, Wx, Wh, workspace, batch_first, dx,
                               dcells, None, None, need_dx, need_dh0)


cdef inline dict pool_of(kernels, bint training):
    """The buffer pool of a direction's kernels (a BufferedKernels), or None (the module's
    functions: SharedBuffers lends)."""
    return kernels._pool if training and isinstance(kernels, BufferedKernels) else None


def directions_forward(kernels, kind, x, states, weights, bint batch_first, bint training,
                       steps=None, out=None, cells_out=None):
    """Both directions of a bidirectional layer at once (run side by side on two threads
    when the thread policy gives two; see run_two): ``kernels``, ``states`` and ``weights``
    are pairs (forward, reverse) of what direction_forward takes; both write their halves
    of ``out`` (and ``cells_out``). Returns ``((finals, workspace), (finals, workspace))``."""
    return run_directions_forward(kernels, KINDS.index(kind), x, states, weights,
                                  batch_first, training, steps, out, cells_out)


cdef tuple run_directions_forward(kernels, int k, x, states, weights, bint batch_first,
                                  bint training, steps, out, cells_out):
    """directions_forward's work (``k`` the kind's index). No comprehensions or generators:
    their objects cost ~0.3 us of a ~10 us tiny bidirectional call."""
    cdef int H = weights[0][1].shape[0]
    cdef bint has_c = k == KIND_LSTM, gru = k == KIND_GRU
    cdef list prepared = []
    cdef int d
    for d in range(2):
        prepared.append(prepare_forward(
            k, x, states[d][0], states[d][1] if has_c else None, weights[d][0], weights[d][1],
            weights[d][2], weights[d][3] if gru else None, batch_first, training,
            pool_of(kernels[d], training), steps, d == 1, out, d * H, cells_out))
    r, u = run_two(<Prepared> prepared[0], <Prepared> prepared[1])
    return (states_of(r, has_c), r[3]), (states_of(u, has_c), u[3])


cdef inline tuple states_of(tuple result, bint has_c):
    """The states (or state gradients) of a direction's forward (backward) result:
    ``(h,)`` or ``(h, c)``, its entries 1 (and 2)."""
    return (result[1], result[2]) if has_c else (result[1],)


cdef void add_values(void* dst, const void* src, Py_ssize_t n, bint is_float) noexcept nogil:
    """dst[:n] += src[:n], float32 (``is_float``) or float64 values."""
    cdef Py_ssize_t i
    cdef float* fd
    cdef const float* fs
    cdef double* dd
    cdef const double* ds
    if is_float:
        fd, fs = <float*> dst, <const float*> src
        for i in range(n):
            fd[i] += fs[i]
    else:
        dd, ds = <double*> dst, <const double*> src
        for i in range(n):
            dd[i] += ds[i]


cdef void add_into(dst, src) except *:
    """dst += src (np.add(dst, src, out=dst)); a plain loop for two C-contiguous arrays of
    one dtype and size (a ufunc call costs ~0.4 us of a ~10 us tiny bidirectional call)."""
    cdef cnp.ndarray d = <cnp.ndarray> dst
    if (type(src) is cnp.ndarray and cnp.PyArray_IS_C_CONTIGUOUS(d)
            and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray> src)
            and cnp.PyArray_TYPE(<cnp.ndarray> src) == cnp.PyArray_TYPE(d)
            and cnp.PyArray_SIZE(<cnp.ndarray> src) == cnp.PyArray_SIZE(d)
            and cnp.PyArray_TYPE(d) in (cnp.NPY_FLOAT32, cnp.NPY_FLOAT64)):
        add_values(cnp.PyArray_DATA(d), cnp.PyArray_DATA(<cnp.ndarray> src),
                   cnp.PyArray_SIZE(d), cnp.PyArray_TYPE(d) == cnp.NPY_FLOAT32)
    else:
        np.add(dst, src, out=dst)


def directions_backward(kernels, kind, dout, dstates, x, Wx, Wh, workspaces,
                        bint batch_first, dcells=None, grads_out=None, bint need_dx=True,
                        bint need_dh0=True):
    """The backward of directions_forward (``dstates``, ``Wx``, ``Wh``, ``workspaces``:
    pairs); returns ``(dx, (dstates0, dstates0), (grads, grads))``, dx the sum of both
    directions' input gradients (None without ``need_dx``; see direction_backward).
    ``grads_out``: a pair of what prepare_backward takes, or None."""
    return run_directions_backward(kernels, KINDS.index(kind), dout, dstates, x, Wx, Wh,
                                   workspaces, batch_first, dcells, grads_out, need_dx,
                                   need_dh0)


cdef tuple run_directions_backward(kernels, int k, dout, dstates, x, Wx, Wh, workspaces,
                                   bint batch_first, dcells, grads_out, bint need_dx,
                                   bint need_dh0):
    """directions_backward's work (``k`` the kind's index; see run_directions_forward)."""
    cdef bint has_c = k == KIND_LSTM, gru = k == KIND_GRU
    cdef list prepared = []
    cdef int d
    for d in range(2):
        prepared.append(prepare_backward(
            k, dout, dstates[d][0], dstates[d][1] if has_c else None, x, Wx[d], Wh[d],
            workspaces[d], batch_first, pool_of(kernels[d], True), None, dcells,
            None if grads_out is None else grads_out[d], need_dx, need_dh0))
    # the reverse direction first (when the two run one after the other): the forward wrote
    # its workspace last, so that is the one still in cache (small fwd+bwd, 1 thread, with
    # other calls between: LSTM 2.00x -> 1.88x one direction's, GRU 2.05x -> 1.79x; in a
    # loop of the pair's calls alone: unchanged)
    u, r = run_two(<Prepared> prepared[1], <Prepared> prepared[0])
    dx = r[0]
    if need_dx:
        add_into(dx, u[0])                  # (apart while the directions run side by side)
    # the parameter gradients: entries 3.. (dWx, dWh, db (, db_hn))
    n = 7 if gru else 6
    return dx, (states_of(r, has_c), states_of(u, has_c)), (r[3:n], u[3:n])


@cython.auto_pickle(False)
cdef class StepKernel:
    """One time step of one layer and direction for streaming inference (``layer.step``):
    the weights packed once, when this is made, and the step's scratch kept, so that a step
    allocates nothing when given its outputs. It holds the arrays it was made from and
    reads them at every step: after writing into them, make a new StepKernel (the packed
    copy would be stale)."""

    cdef Cell cell
    cdef bint is_float
    cdef bint packed
    cdef object Wx, Wh, b, b_hn     # the checked weights (read by BLAS when not packed)
    cdef object Wp, WxP             # packed Wh, Wx
    cdef object scratch             # gates, hidden gates, state blocks, A scratch
    cdef int batch                  # rows the scratch is sized for

    def __init__(self, kind, Wx, Wh, b, b_hn=None):
        cdef int k = KINDS.index(kind)
        self.is_float = Wx.dtype.itemsize == 4
        self.cell = Cell(k, Wx.shape[0], Wh.shape[0], Wh.shape[1])
        self.Wx, self.Wh, self.b, self.b_hn = Wx, Wh, b, b_hn
        self.Wp = self.WxP = self.scratch = None
        self.batch = 0
        cdef int D = self.cell.D, H = self.cell.H, G = self.cell.G
        # (batch 1 decides: what streams is a few rows; more rows are the same products)
        self.packed = use_packed(<long long> H * G, self.is_float)
        if self.packed:
            self.Wp = aligned_empty(packed_size(self.is_float, H, G), self.is_float)
            self.WxP = aligned_empty(packed_size(self.is_float, D, G), self.is_float)
            if self.is_float:
                pack_panels(H, G, <const float*> data(Wh), G, False, <float*> data(self.Wp))
                pack_panels(D, G, <const float*> data(Wx), G, False, <float*> data(self.WxP))
            else:
                pack_panels(H, G, <const double*> data(Wh), G, False,
                            <double*> data(self.Wp))
                pack_panels(D, G, <const double*> data(Wx), G, False,
                            <double*> data(self.WxP))

    cdef bint ready(self, a, Py_ssize_t rows, Py_ssize_t cols, bint writable):
        """Whether ``a`` is an ndarray the kernel takes as it is (see ready): (rows, cols)
        (rows -1: any), of this kernel's dtype (and writeable)."""
        cdef cnp.npy_intp dims[2]
        dims[0], dims[1] = rows, cols
        return ready(a, cnp.NPY_FLOAT32 if self.is_float else cnp.NPY_FLOAT64, 2, dims,
                     writable)

    def step_ready(self, x_t, state, out):
        """``(h_t, state)`` of one step (a one-layer layer's step()) when every argument is
        already what the kernel takes (ndarrays of its dtype, C-contiguous, the right
        shapes; state and out None or as a forward's state), else None (the caller checks
        them and calls step()). No checks of params: the caller's."""
        cdef int H = self.cell.H
        cdef bint has_c = self.cell.kind == KIND_LSTM
        if not self.ready(x_t, -1, self.cell.D, False):
            return None
        cdef Py_ssize_t B = cnp.PyArray_DIM(<cnp.ndarray> x_t, 0)
        if B < 1:
            return None
        h = c = h_out = c_out = None
        if state is not None:
            if has_c:
                if type(state) is not tuple or len(<tuple> state) != 2:
                    return None
                h, c = <tuple> state
                if not (self.ready(h, B, H, False) and self.ready(c, B, H, False)):
                    return None
            else:
                h = state
                if not self.ready(h, B, H, False):
                    return None
        cdef cnp.npy_intp dims[2]
        if out is None:
            dims[0], dims[1] = B, H
            h_out = empty(2, dims, self.is_float)
            c_out = empty(2, dims, self.is_float) if has_c else None
        elif has_c:
            if type(out) is not tuple or len(<tuple> out) != 2:
                return None
            h_out, c_out = <tuple> out
            if not (self.ready(h_out, B, H, True) and self.ready(c_out, B, H, True)):
                return None
        else:
            h_out = out
            if not self.ready(h_out, B, H, True):
                return None
        self.step(x_t, h, c, h_out, c_out)
        return h_out, ((h_out, c_out) if has_c else h_out)

    def step(self, x_t, h, c, h_out, c_out):
        """h_out (, c_out) = the state after one step from (h, c) on x_t (batch, D); every
        array checked by the caller (C-contiguous, this dtype, (batch, ...) shapes; h, c may
        be None: zeros). h_out may be h itself (the state updated in place)."""
        cdef int B = x_t.shape[0], H = self.cell.H, G = self.cell.G, D = self.cell.D
        cdef bint gru = self.cell.kind == KIND_GRU
        cdef bint has_c = self.cell.kind == KIND_LSTM
        cdef ForwardArgs a
        cdef Layout lay = make_layout(1, B, False, H)
        cdef Py_ssize_t gates_n = <Py_ssize_t> B * G, states_n = 3 * <Py_ssize_t> B * H
        cdef Py_ssize_t a_n = a_packed_size(B, max(H, D)) if self.packed else 0
        cdef cnp.npy_intp n
        if B > self.batch:
            n = (gates_n * (2 if gru else 1) + states_n * (2 if has_c else 1) + a_n)
            self.scratch = aligned_empty(n, self.is_float)
            self.batch = B
        cdef char* base = <char*> data(self.scratch)
        cdef size_t item = 4 if self.is_float else 8
        a.x, a.h0, a.c0 = data(x_t), data(h), data(c)
        a.Wx, a.Wh, a.b, a.b_hn = data(self.Wx), data(self.Wh), data(self.b), data(self.b_hn)
        a.wx_t = a.wh_t = False         # (a layer's checked, C-contiguous weights)
        a.out, a.h_n, a.c_n, a.c_out = data(h_out), data(h_out), data(c_out), NULL
        a.gates = base
        base += gates_n * item
        a.hgates = NULL
        if gru:
            a.hgates = base
            base += gates_n * item
        a.hs = base
        base += states_n * item
        a.cs = NULL
        if has_c:
            a.cs = base
            base += states_n * item
        a.a_scratch = base if self.packed else NULL
        a.xbuf = NULL
        a.Wp, a.WxP = data(self.Wp), data(self.WxP)
        a.chunk, a.training, a.serial, a.prepacked = 1, False, True, True
        cdef Cell cell = self.cell
        cdef bint is_float = self.is_float
        cdef unsigned int csr
        with nogil:
            csr = rf_denormals_off()
            if is_float:
                forward_loop(<float> 0, cell, &lay, &a)
            else:
                forward_loop(<double> 0, cell, &lay, &a)
            rf_denormals_restore(csr)


# ----------------------------------------------------------------------------- a layer's fast lane
# A one-layer, one-direction layer's calls with arguments that already are what the kernels
# take skip rnnfast._checks' Python (a tiny training forward+backward spent 10-15 us of its
# ~50 there, against ~17 us of kernels): these tests in C decide, and anything else (another
# dtype, a list, a wrong shape) takes the checked path, which converts or raises the error.

cdef bint ready(object a, int typenum, int nd, const cnp.npy_intp* dims,
               bint writable=False):
    """Whether ``a`` is what the kernels take as it is: an ndarray (no subclass) of this
    type, C-contiguous and aligned, shaped ``dims`` (nd of them; -1: any), and writeable
    with ``writable``."""
    if type(a) is not cnp.ndarray:
        return False
    cdef cnp.ndarray arr = <cnp.ndarray> a
    cdef int i
    if (cnp.PyArray_TYPE(arr) != typenum or cnp.PyArray_NDIM(arr) != nd
            or not cnp.PyArray_IS_C_CONTIGUOUS(arr) or not cnp.PyArray_ISALIGNED(arr)
            or (writable and not cnp.PyArray_ISWRITEABLE(arr))):
        return False
    for i in range(nd):
        if dims[i] >= 0 and cnp.PyArray_DIM(arr, i) != dims[i]:
            return False
    return True


cdef bint states_ready(tuple states, int typenum, Py_ssize_t n, Py_ssize_t B, Py_ssize_t H):
    """Whether every state (or state gradient) is None or ready as an (n, B, H) array (a
    layer's, n = layers x directions), or with n = 0 as a (B, H) array (one direction's)."""
    cdef cnp.npy_intp dims[3]
    dims[0], dims[1], dims[2] = n, B, H
    for st in states:
        if st is not None and not (ready(st, typenum, 3, dims) if n
                                   else ready(st, typenum, 2, dims + 1)):
            return False
    return True


cdef Py_ssize_t input_rows(object x, cnp.ndarray Wx, bint batch_first):
    """The batch size of an input ``x`` the kernels take as it is against the weights Wx (of
    its dtype, (.., .., input_size), C-contiguous and aligned, at least one step and row,
    no matrix too large for 32-bit BLAS indices), else 0 (the checked path decides)."""
    if type(x) is not cnp.ndarray:
        return 0
    cdef cnp.ndarray xa = <cnp.ndarray> x
    cdef Py_ssize_t D = cnp.PyArray_DIM(Wx, 0), G = cnp.PyArray_DIM(Wx, 1), B, T
    if (cnp.PyArray_TYPE(xa) != cnp.PyArray_TYPE(Wx) or cnp.PyArray_NDIM(xa) != 3
            or not cnp.PyArray_IS_C_CONTIGUOUS(xa) or not cnp.PyArray_ISALIGNED(xa)
            or cnp.PyArray_DIM(xa, 2) != D):
        return 0
    B, T = cnp.PyArray_DIM(xa, 0), cnp.PyArray_DIM(xa, 1)
    if not batch_first:
        B, T = T, B
    if B < 1 or T < 1 or B * T > BLAS_INDEX_MAX // max(D, G):
        return 0
    return B


cdef inline bint apart(cnp.ndarray a, object b):
    """Whether the memory of ``a`` (C-contiguous) and of ``b`` (None: nothing) is disjoint;
    False for a ``b`` that is not C-contiguous (its extent is not its first nbytes)."""
    if b is None:
        return True
    if not cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray> b):
        return False
    cdef char* pa = <char*> cnp.PyArray_DATA(a)
    cdef char* pb = <char*> cnp.PyArray_DATA(<cnp.ndarray> b)
    return (pa + cnp.PyArray_NBYTES(a) <= pb
            or pb + cnp.PyArray_NBYTES(<cnp.ndarray> b) <= pa)


cdef int grads_ready(tuple grads, tuple weights, tuple reads):
    """Whether ``grads`` can take a backward's parameter gradients: 0 not (an entry that is
    not a writeable ndarray of its parameter's shape and dtype, C-contiguous), 1 as a place
    to store them afterwards, 2 to be written by the kernels directly (besides, overlapping
    no other entry, no weight and none of ``reads``, the caller's arrays the call may read
    after it has begun to write: dout, and a stack's state gradients, which each layer
    reads at its turn; None entries are skipped)."""
    cdef Py_ssize_t n = len(weights), i, j
    cdef cnp.ndarray w, g
    if len(grads) != n:
        return 0
    for i in range(n):
        w = <cnp.ndarray> weights[i]
        if not ready(grads[i], cnp.PyArray_TYPE(w), cnp.PyArray_NDIM(w), cnp.PyArray_DIMS(w),
                     True):
            return 0
    for i in range(n):
        g = <cnp.ndarray> grads[i]
        for r in reads:
            if not apart(g, r):
                return 1
        for j in range(n):
            if not apart(g, weights[j]) or (j > i and not apart(g, grads[j])):
                return 1
    return 2


@cython.auto_pickle(False)
cdef class ParamsSnapshot:
    """A layer's checked parameter arrays as they were checked: which objects ``params``
    held under ``names``, and their dtypes, shapes and strides (which can be set in place,
    ``params["Wh"].shape = ...``, and the kernels trust them without bounds checks).
    ``holds(params)`` says in C whether ``params`` still holds exactly that (~0.1 us; the
    Python comparison of the same took ~1.4 us, a tenth of a tiny forward)."""

    cdef tuple names
    cdef tuple arrays
    cdef Py_ssize_t* layout
    cdef Py_ssize_t n_values

    def __cinit__(self):
        self.layout = NULL

    def __init__(self, tuple names, tuple arrays):
        if len(names) != len(arrays):
            raise ValueError(f"names and arrays differ in length: {len(names)} against "
                             f"{len(arrays)}")
        for a in arrays:
            if type(a) is not cnp.ndarray:
                raise TypeError(f"arrays must be ndarrays, got {type(a).__name__}")
        self.names, self.arrays = names, arrays
        self.n_values = 0
        for a in arrays:
            self.n_values += 2 + 2 * cnp.PyArray_NDIM(<cnp.ndarray> a)
        PyMem_Free(self.layout)         # (__init__ called again)
        self.layout = <Py_ssize_t*> PyMem_Malloc(max(1, self.n_values) * sizeof(Py_ssize_t))
        if self.layout == NULL:
            raise MemoryError()
        self.fill(self.layout)

    def __dealloc__(self):
        PyMem_Free(self.layout)

    cdef Py_ssize_t fill(self, Py_ssize_t* out):
        """Writes the arrays' layout (dtype, ndim, shape, strides, each) into ``out``, at
        most n_values values; returns how many it would have written."""
        cdef Py_ssize_t k = 0, i
        cdef cnp.ndarray a
        for obj in self.arrays:
            a = <cnp.ndarray> obj
            if k + 2 + 2 * cnp.PyArray_NDIM(a) > self.n_values:
                return self.n_values + 1            # (ndim changed: not the same)
            out[k] = cnp.PyArray_TYPE(a)
            out[k + 1] = cnp.PyArray_NDIM(a)
            k += 2
            for i in range(cnp.PyArray_NDIM(a)):
                out[k] = cnp.PyArray_DIM(a, i)
                out[k + 1] = cnp.PyArray_STRIDE(a, i)
                k += 2
        return k

    def holds(self, params):
        """Whether the dict ``params`` holds these very arrays under these names, with the
        layout they had."""
        cdef Py_ssize_t i, n
        cdef PyObject* got
        if type(params) is not dict or self.layout == NULL:    # (never made: nothing held)
            return False
        n = len(self.names)
        for i in range(n):
            got = PyDict_GetItem(params, self.names[i])
            if got == NULL or got != <PyObject*> self.arrays[i]:
                return False
        cdef Py_ssize_t stack[64]
        cdef Py_ssize_t* now = stack
        if self.n_values > 64:
            now = <Py_ssize_t*> PyMem_Malloc(self.n_values * sizeof(Py_ssize_t))
            if now == NULL:
                raise MemoryError()
        cdef bint same = (self.fill(now) == self.n_values
                          and memcmp(now, self.layout, self.n_values * sizeof(Py_ssize_t)) == 0)
        if now != stack:
            PyMem_Free(now)
        return same


def grads_fit(tuple grads, tuple weights, dout, tuple dstates=()):
    """What ``grads`` (a layer's gradient arrays, in its parameters' order) can take of a
    backward on ``weights`` from ``dout`` and the state gradients ``dstates``: 0 nothing
    (an entry is not a writeable ndarray of its parameter's shape and dtype, C-contiguous),
    1 the gradients stored afterwards, 2 written by the kernels directly (``grads_out``: no
    entry overlaps another, a weight, dout or a state gradient). See grads_ready."""
    for w in weights:
        if type(w) is not cnp.ndarray:
            return 0
    cdef tuple reads = (dout,) + dstates
    for r in reads:
        if r is not None and type(r) is not cnp.ndarray:
            return 1
    return grads_ready(grads, weights, reads)


cdef object lane_steps(lengths, x, Py_ssize_t B, bint batch_first):
    """sequence_steps() of the lengths a fast lane is given (None without any), or False
    when the lane cannot take them as they are: an intp ndarray of one entry per row, each
    in 1 .. seq_len (else the checked path converts them or raises). Here, not in Python:
    ~0.3 us of a ~4 us tiny call. ``x`` is a ready input of B rows (input_rows)."""
    if lengths is None:
        return None
    cdef cnp.npy_intp rows[1]
    rows[0] = B
    if not ready(lengths, cnp.NPY_INTP, 1, rows):
        return False
    return sequence_steps(lengths, cnp.PyArray_DIM(<cnp.ndarray> x, 1 if batch_first else 0))


cdef inline tuple direction_states(tuple states, Py_ssize_t j):
    """Direction j's (of a stack's layers x directions) states or state gradients: per state
    the (B, H) view ``states[k][j]``, or None where the state is None."""
    if len(states) == 1:
        return (None if states[0] is None else states[0][j],)
    return (None if states[0] is None else states[0][j],
            None if states[1] is None else states[1][j])


cdef void put_direction(tuple stacked, Py_ssize_t j, tuple per_state, size_t nbytes) except *:
    """``stacked[k][j] = per_state[k]`` for every state k (stacked: (n, B, H) arrays, new and
    C-contiguous; ``nbytes`` one (B, H) block's bytes): a memcpy where the source is a
    C-contiguous (B, H) array of the dtype (an item assignment costs ~0.3 us)."""
    cdef cnp.ndarray dst
    cdef Py_ssize_t k
    for k in range(len(stacked)):
        dst = <cnp.ndarray> stacked[k]
        src = per_state[k]
        if (type(src) is cnp.ndarray and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray> src)
                and <size_t> cnp.PyArray_NBYTES(<cnp.ndarray> src) == nbytes
                and cnp.PyArray_TYPE(<cnp.ndarray> src) == cnp.PyArray_TYPE(dst)):
            memcpy(<char*> cnp.PyArray_DATA(dst) + j * nbytes,
                   cnp.PyArray_DATA(<cnp.ndarray> src), nbytes)
        else:
            dst[j] = src


cdef tuple stacked_states(Py_ssize_t n_states, Py_ssize_t n, Py_ssize_t B, Py_ssize_t H,
                          bint is_float):
    """``n_states`` new (n, B, H) arrays."""
    cdef cnp.npy_intp dims[3]
    dims[0], dims[1], dims[2] = n, B, H
    if n_states == 1:
        return (empty(3, dims, is_float),)
    return (empty(3, dims, is_float), empty(3, dims, is_float))


def stack_forward(kernels, kind, x, tuple states, tuple weights, int directions,
                  bint batch_first, bint training, lengths=None):
    """layer_forward for a layer of several layers or two directions, rnnfast._sequence's
    forward without rnnfast._checks' Python: ``kernels`` per (layer, direction) its
    BufferedKernels, ``weights`` all their checked parameters, one flat tuple, per (layer,
    direction) in the registry's order; ``states`` per state None or a (layers x
    directions, batch, hidden) array; ``lengths`` as layer_forward takes them. A layer's
    two directions run in directions_forward. Returns ``(out, finals, layers, x_kept,
    steps)``: finals per state (layers x directions, batch, hidden), ``layers`` per layer
    ``(its input, [its directions' workspaces])`` as _sequence.forward's cache holds them
    (its input for layer 0 is x_kept: a copy of x, or x itself when ``kernels`` are this
    module's functions). None when x, the states or the lengths are not ready as they are
    (the caller checks, converts or raises)."""
    cdef Py_ssize_t nj = len(kernels), n = len(weights) // nj
    cdef cnp.ndarray Wx = <cnp.ndarray> weights[0], Wh = <cnp.ndarray> weights[1]
    cdef int typenum = cnp.PyArray_TYPE(Wx)
    cdef Py_ssize_t B = input_rows(x, Wx, batch_first), H = cnp.PyArray_DIM(Wh, 0)
    if B == 0 or not states_ready(states, typenum, nj, B, H):
        return None
    # (layer 0's x is bounded by input_rows; the layers above read directions x H features)
    if (cnp.PyArray_DIM(<cnp.ndarray> x, 0) * cnp.PyArray_DIM(<cnp.ndarray> x, 1)
            > BLAS_INDEX_MAX // max(directions * H, cnp.PyArray_DIM(Wx, 1))):
        return None
    steps = lane_steps(lengths, x, B, batch_first)
    if steps is False:
        return None
    cdef bint is_float = typenum == cnp.NPY_FLOAT32
    cdef cnp.ndarray xa = <cnp.ndarray> x
    if training and isinstance(kernels[0], BufferedKernels):
        # backward reads x as it was: one copy (layer 0's kernels'); the module's functions
        # as kernels keep x itself (rnnfast.torch: torch refuses a backward after x changed)
        x = kernels[0].kept_copy(xa)
    cdef int k = KINDS.index(kind)
    cdef cnp.npy_intp dims[3]
    dims[0], dims[1], dims[2] = cnp.PyArray_DIM(xa, 0), cnp.PyArray_DIM(xa, 1), directions * H
    cdef tuple finals = stacked_states(len(states), nj, B, H, is_float)
    cdef size_t block = <size_t> B * H * (4 if is_float else 8)
    cdef list layers = []
    cdef Py_ssize_t j0
    layer_in = x
    for j0 in range(0, nj, directions):
        # rows past their end are never written: zeros
        out = (empty(3, dims, is_float) if steps is None
               else cnp.PyArray_ZEROS(3, dims, typenum, 0))
        if directions == 2:
            done = run_directions_forward(
                kernels[j0:j0 + 2], k, layer_in,
                [direction_states(states, j0), direction_states(states, j0 + 1)],
                (weights[j0 * n:(j0 + 1) * n], weights[(j0 + 1) * n:(j0 + 2) * n]),
                batch_first, training, steps, out, None)
            put_direction(finals, j0, done[0][0], block)
            put_direction(finals, j0 + 1, done[1][0], block)
            layers.append((layer_in, [done[0][1], done[1][1]]))
        else:
            _, fin, ws = _direction_forward(kind, layer_in, direction_states(states, j0),
                                            weights[j0 * n:(j0 + 1) * n], batch_first,
                                            training, steps, False, out, 0, None,
                                            pool_of(kernels[j0], training))
            put_direction(finals, j0, fin, block)
            layers.append((layer_in, [ws]))
        layer_in = out
    return layer_in, finals, layers, (x if training else None), steps


def stack_backward(kernels, kind, dout, tuple dstates, list layers, tuple weights,
                   int directions, bint batch_first, grads, bint into,
                   bint need_dx=True, bint need_dh0=True):
    """layer_backward for stack_forward's call (``layers`` its layers, ``weights`` the same
    checked parameters, so the workspaces fit them), rnnfast._sequence's backward without
    rnnfast._checks' Python: ``dstates`` per state None or (layers x directions, batch,
    hidden), ``grads`` every (layer, direction)'s gradient arrays, one flat tuple, or None
    (new arrays, nothing to check). Returns ``(dx, dstates0, grads, written)``, grads one
    flat tuple; None when dout, the state gradients or grads are not ready as they are.
    ``need_dx`` (layer 0's input gradient), ``need_dh0``: see direction_backward."""
    cdef Py_ssize_t nj = len(kernels), n = len(weights) // nj
    cdef cnp.ndarray xa = <cnp.ndarray> layers[0][0], Wh = <cnp.ndarray> weights[1]
    cdef int typenum = cnp.PyArray_TYPE(Wh)
    cdef Py_ssize_t H = cnp.PyArray_DIM(Wh, 0)
    cdef Py_ssize_t B = cnp.PyArray_DIM(xa, 0 if batch_first else 1)
    cdef cnp.npy_intp dims[3]
    dims[0], dims[1], dims[2] = cnp.PyArray_DIM(xa, 0), cnp.PyArray_DIM(xa, 1), directions * H
    if dout is not None and not ready(dout, typenum, 3, dims):
        return None
    if not states_ready(dstates, typenum, nj, B, H):
        return None
    cdef int fit = 1 if grads is None else grads_ready(grads, weights, (dout,) + dstates)
    if fit == 0:
        return None
    cdef bint written = into and fit == 2
    cdef bint is_float = typenum == cnp.NPY_FLOAT32
    cdef int k = KINDS.index(kind)
    cdef tuple dstates0 = stacked_states(len(dstates), nj, B, H, is_float)
    cdef size_t block = <size_t> B * H * (4 if is_float else 8)
    cdef list per_direction = [None] * nj
    cdef Py_ssize_t j0, layer
    d_above = dout                      # the gradient of this layer's output (None: zeros)
    for j0 in range(nj - directions, -1, -directions):
        layer = j0 // directions
        layer_in, workspaces = layers[layer]
        if directions == 2:
            d_above, d0s, gs = run_directions_backward(
                kernels[j0:j0 + 2], k, d_above,
                [direction_states(dstates, j0), direction_states(dstates, j0 + 1)],
                layer_in,
                (weights[j0 * n], weights[(j0 + 1) * n]),
                (weights[j0 * n + 1], weights[(j0 + 1) * n + 1]), workspaces, batch_first,
                None, ((grads[j0 * n:(j0 + 1) * n], grads[(j0 + 1) * n:(j0 + 2) * n])
                       if written else None), need_dx or layer > 0, need_dh0)
            put_direction(dstates0, j0, d0s[0], block)
            put_direction(dstates0, j0 + 1, d0s[1], block)
            per_direction[j0], per_direction[j0 + 1] = gs[0], gs[1]
        else:
            d_above, d0, g = _direction_backward(
                kind, d_above, direction_states(dstates, j0), layer_in,
                weights[j0 * n], weights[j0 * n + 1], workspaces[0], batch_first, None, None,
                pool_of(kernels[j0], True), grads[j0 * n:(j0 + 1) * n] if written else None,
                need_dx or layer > 0, need_dh0)
            put_direction(dstates0, j0, d0, block)
            per_direction[j0] = g
    cdef tuple flat = ()
    for g in per_direction:
        flat += g
    return d_above, dstates0, flat, written


class BufferedKernels:
    """One layer's direction kernels (direction_forward/backward, and the fast lane's
    layer_forward/backward): the training workspace and the scratch blocks are kept
    between calls and reused instead of allocated anew (outputs and gradients are always
    new arrays). So a workspace is valid only until the next training forward, and
    one object serves one thread at a time. Inference borrows from SharedBuffers as the
    module functions do (an eval layer may be shared by threads)."""

    def __init__(self):
        self._pool = {}

    def release(self):
        """Drop the kept buffers (the next training call allocates them again)."""
        self._pool.clear()

    def kept_copy(self, cnp.ndarray x):
        """A copy of the checked input x, for backward, in a kept buffer: valid, like the
        workspace, until the next training forward."""
        cdef cnp.ndarray copy = pooled(self._pool, "x", cnp.PyArray_NDIM(x),
                                       cnp.PyArray_DIMS(x), x.dtype.itemsize == 4)
        if cnp.PyArray_CopyInto(copy, x) < 0:
            raise MemoryError("copying x for backward failed")
        return copy

    def layer_forward(self, kind, x, tuple states, tuple weights, bint batch_first,
                      bint training, lengths=None):
        """The forward of a one-layer, one-direction layer (``weights``: its checked
        parameters, in the registry's order; ``lengths``: the batch's sequence lengths as
        the caller gave them, or None) when x, the states and the lengths are ready as they
        are (lengths an intp ndarray of one entry per row, each in 1 .. seq_len): ``(out,
        finals, workspace, x_kept, steps)``, x_kept the copy of x its backward reads (None
        in inference), steps sequence_steps() of the lengths. None when they are not (the
        caller checks, converts or raises)."""
        cdef cnp.ndarray Wx = <cnp.ndarray> weights[0], Wh = <cnp.ndarray> weights[1]
        cdef Py_ssize_t B = input_rows(x, Wx, batch_first)
        if B == 0 or not states_ready(states, cnp.PyArray_TYPE(Wx), 0, B,
                                      cnp.PyArray_DIM(Wh, 0)):
            return None
        steps = lane_steps(lengths, x, B, batch_first)
        if steps is False:
            return None
        if training:                    # backward reads x as it was: our own copy
            x = self.kept_copy(<cnp.ndarray> x)
        done = _direction_forward(kind, x, states, weights, batch_first, training, steps,
                                  False, None, 0, None, self._pool if training else None)
        return done + ((x if training else None), steps)

    def layer_backward(self, kind, dout, tuple dstates, x, tuple weights, workspace,
                       bint batch_first, tuple grads, bint into, bint need_dx=True,
                       bint need_dh0=True):
        """The backward of layer_forward's call (``x`` its x_kept and ``weights`` the same
        checked parameters: the workspace is known to fit) when dout and the state
        gradients are ready as they are and ``grads`` (the layer's gradient arrays, in the
        parameters' order) can take the gradients: written into them with ``into`` where
        grads_ready allows, else new arrays for the caller to store. Returns ``(dx,
        dstates0, grads, written)``; None when not ready (the caller checks or raises).
        ``need_dx``, ``need_dh0``: see direction_backward."""
        cdef cnp.ndarray xa = <cnp.ndarray> x, Wh = <cnp.ndarray> weights[1]
        cdef int typenum = cnp.PyArray_TYPE(Wh)
        cdef cnp.npy_intp dims[3]
        dims[0], dims[1], dims[2] = cnp.PyArray_DIM(xa, 0), cnp.PyArray_DIM(xa, 1), \
            cnp.PyArray_DIM(Wh, 0)
        if dout is not None and not ready(dout, typenum, 3, dims):
            return None
        if not states_ready(dstates, typenum, 0, dims[0] if batch_first else dims[1],
                            dims[2]):
            return None
        cdef int fit = grads_ready(grads, weights, (dout,) + dstates)
        if fit == 0:
            return None
        cdef bint written = into and fit == 2
        return _direction_backward(kind, dout, dstates, x, weights[0], Wh, workspace,
                                   batch_first, None, None, self._pool,
                                   grads if written else None, need_dx,
                                   need_dh0) + (written,)

    def direction_forward(self, kind, x, states, weights, batch_first, training, steps=None,
                          reverse=False, out=None, out_col=0, cells_out=None):
        return _direction_forward(kind, x, states, weights, batch_first, training, steps,
                                  reverse, out, out_col, cells_out,
                                  self._pool if training else None)

    def direction_backward(self, kind, dout, dstates, x, Wx, Wh, workspace, batch_first,
                           dx=None, dcells=None, grads_out=None, need_dx=True,
                           need_dh0=True):
        return _direction_backward(kind, dout, dstates, x, Wx, Wh, workspace, batch_first,
                                   dx, dcells, self._pool, grads_out, need_dx, need_dh0)


# ----------------------------------------------------------------------------- thread policy
# See _threads.h for what each policy does and why.

THREAD_POLICIES = ("adaptive", "static")


def set_thread_policy(policy):
    """How large problems share OpenMP's threads (at most OMP_NUM_THREADS / threadpoolctl's
    limit): ``"adaptive"`` (the default) uses one thread per call while another rnnfast call
    is in flight, and for a while after a thread was found late at a step's barrier (another
    process busy on its core); ``"static"`` always uses them all. Results are bitwise the
    same either way. Returns the previous policy."""
    if policy not in THREAD_POLICIES:
        raise ValueError(f"thread policy must be one of {THREAD_POLICIES}, got {policy!r}")
    previous = thread_policy()
    rf_set_policy(THREAD_POLICIES.index(policy))
    rf_go_solo_for(0)               # a fresh start: no back-off carried over
    return previous


def thread_policy():
    """The thread policy in force: "adaptive" or "static"."""
    return THREAD_POLICIES[rf_get_policy()]


def _thread_state():
    """For tests and benchmarks: calls in flight, threads a step would get now, and how
    many shared regions were found late since the module was loaded (cold ones, which found
    the worker asleep, apart; ``cold_wakeups_slow``: small cold calls run solo now)."""
    return {"calls_in_flight": rf_get_calls_in_flight(), "team_threads": rf_team_threads(),
            "late_regions": rf_get_late_regions(),
            "cold_late_regions": rf_get_cold_late_regions(),
            "cold_wakeups_slow": rf_cold_wakeups_slow(),
            "small_pairs_late": rf_get_small_pairs_late(),
            "last_late_spread_ns": rf_get_last_spread(),
            "last_late_fastest_ns": rf_get_last_fastest()}


def _go_solo_for(double seconds):
    """For tests: act as if a thread had just been found late (steps solo for ``seconds``;
    0 ends it)."""
    rf_go_solo_for(<long long> (seconds * 1e9))


def _judge_region(finish_after_start_ns, bint cold=False):
    """For tests: judge a made-up shared region whose threads finished these many
    nanoseconds after it started, as rf_team_end judges a real one; returns whether it was
    found late (the steps then go solo for the back-off time; with ``cold``, a region that
    found the worker asleep: small cold calls then go solo, see _cold_call_solo)."""
    cdef rf_team_timer timer
    cdef int i
    cdef long long before = rf_get_late_regions() + rf_get_cold_late_regions()
    rf_team_start(&timer, len(finish_after_start_ns))
    timer.cold = cold
    for i in range(timer.threads):
        timer.done_ns[i] = timer.start_ns + <long long> finish_after_start_ns[i]
    rf_team_end(&timer)
    return rf_get_late_regions() + rf_get_cold_late_regions() > before


def _cores_taken(int team):
    """For tests: whether threads of other processes now run on the cores a team of ``team``
    threads would need (looked at when a back-off ends, _threads.h)."""
    return bool(rf_cores_taken(team))


def _small_pair_shares():
    """For tests: whether a small pair (see run_two) starting now would run side by side."""
    return bool(rf_small_pair_shares())


def _judge_small_pair(finish_after_start_ns, long long work=1 << 18):
    """For tests: judge a made-up small pair's region (two directions of ``work``
    multiply-adds each) whose two threads finished these many nanoseconds after it started,
    as run_two judges a real one; returns whether side by side was found slower than one
    after the other (small pairs then run one after the other for the back-off time). The
    first pair after ``_go_solo_for(0)`` only sets the time per multiply-add."""
    cdef rf_team_timer timer
    rf_team_start(&timer, 2)
    timer.idle_ns = 0                           # (a warm pair: judged)
    timer.cold = False
    timer.done_ns[0] = timer.start_ns + <long long> finish_after_start_ns[0]
    timer.done_ns[1] = timer.start_ns + <long long> finish_after_start_ns[1]
    return bool(rf_small_pair_end(&timer, work, work))


def _cold_call_solo(long long work):
    """For tests: whether a call of ``work`` multiply-adds starting now would run on one
    thread because it starts cold (_threads.h)."""
    return bool(rf_cold_call_solo(work))


def _policy_from_environment():
    import os
    import warnings
    policy = os.environ.get("RNNFAST_THREAD_POLICY", "").strip().lower()
    if policy == "":
        return
    if policy not in THREAD_POLICIES:
        warnings.warn(f"RNNFAST_THREAD_POLICY={policy!r} is not one of {THREAD_POLICIES}; "
                      f"using 'adaptive'", RuntimeWarning, stacklevel=2)
        return
    set_thread_policy(policy)


_policy_from_environment()


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


def transposed(a):
    """``a.T`` as a new C-contiguous array: for a 2-D C-contiguous float32/float64 array a
    tiled copy in C (rnnfast.torch's weights and their gradients, each call: NumPy's strided
    ``a.T.copy()`` cost ~5 instructions a value and ~2 us of overhead at a tiny layer's
    sizes), for anything else NumPy's ``np.ascontiguousarray(a.T)``."""
    if not (cnp.PyArray_Check(a) and cnp.PyArray_NDIM(<cnp.ndarray> a) == 2
            and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray> a)
            and cnp.PyArray_TYPE(<cnp.ndarray> a) in (cnp.NPY_FLOAT32, cnp.NPY_FLOAT64)
            and a.shape[0] <= INT_MAX and a.shape[1] <= INT_MAX):
        return np.ascontiguousarray(np.asarray(a).T)
    cdef cnp.ndarray src = <cnp.ndarray> a
    cdef bint is_float = cnp.PyArray_TYPE(src) == cnp.NPY_FLOAT32
    cdef cnp.npy_intp dims[2]
    cdef int rows = <int> cnp.PyArray_DIM(src, 0), cols = <int> cnp.PyArray_DIM(src, 1)
    dims[0], dims[1] = cols, rows
    cdef cnp.ndarray dst = empty(2, dims, is_float)
    with nogil:
        if is_float:
            rf_transpose_f(rows, cols, <const float*> cnp.PyArray_DATA(src), cols,
                           <float*> cnp.PyArray_DATA(dst), rows)
        else:
            rf_transpose_d(rows, cols, <const double*> cnp.PyArray_DATA(src), cols,
                           <double*> cnp.PyArray_DATA(dst), rows)
    return dst


cdef bint same_vectors(a, b):
    """Whether ``a`` and ``b`` are 1-D C-contiguous float32/float64 ndarrays of one dtype
    (a new array of a run of theirs is a memcpy)."""
    return (type(a) is cnp.ndarray and type(b) is cnp.ndarray
            and cnp.PyArray_NDIM(<cnp.ndarray> a) == 1 and cnp.PyArray_NDIM(<cnp.ndarray> b) == 1
            and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray> a)
            and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray> b)
            and cnp.PyArray_TYPE(<cnp.ndarray> a) in (cnp.NPY_FLOAT32, cnp.NPY_FLOAT64)
            and cnp.PyArray_TYPE(<cnp.ndarray> a) == cnp.PyArray_TYPE(<cnp.ndarray> b))


cdef cnp.ndarray vector_of(cnp.ndarray a, Py_ssize_t n):
    """A new vector of ``n`` values of a vector same_vectors accepted, uninitialised."""
    cdef cnp.npy_intp dims[1]
    dims[0] = n
    return empty(1, dims, cnp.PyArray_TYPE(a) == cnp.NPY_FLOAT32)


cdef void copy_values(cnp.ndarray dst, Py_ssize_t at, cnp.ndarray src, Py_ssize_t start,
                      Py_ssize_t n):
    """``dst[at:at + n] = src[start:start + n]`` for vectors same_vectors accepted."""
    cdef size_t size = cnp.PyArray_ITEMSIZE(src)
    memcpy(<char*> cnp.PyArray_DATA(dst) + at * size,
           <const char*> cnp.PyArray_DATA(src) + start * size, n * size)


def summed_biases(bias_ih, bias_hh, Py_ssize_t summed, bint rest):
    """rnnfast's biases from torch's two, as CellSpec.biases_from_torch defines them (the
    cell's spec gives ``summed``, how many leading entries add both, and ``rest``, whether
    bias_hh's other entries are a parameter of their own): ``(b,)`` or ``(b, b_hn)``, new
    arrays, for two 1-D C-contiguous float vectors of one dtype and length; None for
    anything else (the caller takes the spec's NumPy). ~0.3 us against NumPy's 0.5-1.6 at a
    tiny layer, per rnnfast.torch call. NumPy: ``b = bias_ih.copy(); b[:summed] +=
    bias_hh[:summed]; b_hn = bias_hh[summed:].copy()``."""
    if not same_vectors(bias_ih, bias_hh):
        return None
    cdef cnp.ndarray bi = <cnp.ndarray> bias_ih, bh = <cnp.ndarray> bias_hh
    cdef Py_ssize_t n = cnp.PyArray_DIM(bi, 0)
    if cnp.PyArray_DIM(bh, 0) != n or not 0 <= summed <= n:
        return None
    cdef cnp.ndarray b = vector_of(bi, n)
    copy_values(b, 0, bi, 0, n)
    add_values(cnp.PyArray_DATA(b), cnp.PyArray_DATA(bh), summed,
               cnp.PyArray_TYPE(bi) == cnp.NPY_FLOAT32)
    if not rest:
        return (b,)
    cdef cnp.ndarray b_hn = vector_of(bh, n - summed)
    copy_values(b_hn, 0, bh, summed, n - summed)
    return b, b_hn


def split_bias_grads(db, db_hn, Py_ssize_t summed):
    """torch's two bias gradients from rnnfast's, as CellSpec.bias_grads_to_torch defines
    them: ``(grad_ih, grad_hh)``, new arrays, grad_ih = db, grad_hh = db in its first
    ``summed`` entries and db_hn (None: db) after; for 1-D C-contiguous float vectors of one
    dtype (db_hn of len(db) - summed entries); None for anything else (the caller takes the
    spec's NumPy). NumPy: ``db.copy(), np.concatenate([db[:summed], db_hn])``."""
    rest = db if db_hn is None else db_hn
    if not same_vectors(db, rest):
        return None
    cdef cnp.ndarray d = <cnp.ndarray> db, r = <cnp.ndarray> rest
    cdef Py_ssize_t n = cnp.PyArray_DIM(d, 0)
    if not 0 <= summed <= n or (db_hn is not None and cnp.PyArray_DIM(r, 0) != n - summed):
        return None
    cdef cnp.ndarray grad_ih = vector_of(d, n), grad_hh = vector_of(d, n)
    copy_values(grad_ih, 0, d, 0, n)
    copy_values(grad_hh, 0, d, 0, summed)
    copy_values(grad_hh, summed, r, 0 if db_hn is not None else summed, n - summed)
    return grad_ih, grad_hh


def _packed_matmul_bench(float[:, ::1] a, float[:, ::1] w, int repeat,
                         bint w_transposed=False):
    """Development aid: C = a @ W through the packed per-step product, ``repeat`` times;
    W is ``w``, or ``w.T`` packed from ``w`` (n, k) when ``w_transposed`` (as the backward
    packs Wh.T)."""
    cdef int m = a.shape[0], k = a.shape[1], r
    cdef int n = w.shape[0] if w_transposed else w.shape[1]
    if w.shape[1 if w_transposed else 0] != k:
        raise ValueError(f"w must have a's {k} columns as its "
                         f"{'columns' if w_transposed else 'rows'}, got shape "
                         f"({w.shape[0]}, {w.shape[1]})")
    wp = np.empty(rf_packed_size_f(k, n), np.float32)
    c = np.zeros((m, n), np.float32)
    ap = np.empty(A_PACKED_SIZE, np.float32)
    cdef float[::1] wp_v = wp
    cdef float[::1] ap_v = ap
    cdef float[:, ::1] c_v = c
    rf_pack_panels_f(k, n, &w[0, 0], k if w_transposed else n, w_transposed, &wp_v[0])
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


def _set_w_in_cache(long long nbytes):
    """Development aid: the packed weight size (bytes) above which the packed products
    fetch W ahead and run k blocks outermost (0: the default, 1 MiB; see _simd.h); returns
    the previous value. Changes no result, only speed. Not while kernels run."""
    return rf_w_in_cache_use(nbytes)


def _set_interleave_aliased(int mode):
    """Development aid: whether the packed products copy A's rows (interleaved) when they
    lie a multiple of 4 KiB apart and W is held in cache: 1 copy, 0 read in place, -1 this
    machine's default (in place where the L1 has at least 12 ways; see _simd.h). Returns
    the setting before (1 or 0). Changes no result, only speed. Not while kernels run."""
    return rf_interleave_aliased_use(mode)


rf_interleave_aliased_use(-1)


# ----------------------------------------------------------------------------- optimizers

cdef extern from "_optim.h" nogil:
    void rf_adam_f(Py_ssize_t n, float* p, const float* g, float* m, float* v, float b1,
                   float one_b1, float b2, float one_b2, float step_size, float eps,
                   float wd, int decay)
    void rf_adam_d(Py_ssize_t n, double* p, const double* g, double* m, double* v, double b1,
                   double one_b1, double b2, double one_b2, double step_size,
                   double eps, double wd, int decay)
    void rf_adagrad_f(Py_ssize_t n, float* p, const float* g, float* acc, float lr, float eps,
                      float wd, int decay)
    void rf_adagrad_d(Py_ssize_t n, double* p, const double* g, double* acc, double lr,
                      double eps, double wd, int decay)
    void rf_sgd_f(Py_ssize_t n, float* p, const float* g, float* buf, float lr,
                  float momentum, int nesterov, float wd, int decay)
    void rf_sgd_d(Py_ssize_t n, double* p, const double* g, double* buf, double lr,
                  double momentum, int nesterov, double wd, int decay)


cdef int fusable(tuple arrays, int writable_from) except -1:
    """The element size (4 or 8 bytes) when ``arrays`` (None skipped) are NumPy arrays of
    one dtype, float32 or float64, C-contiguous, of one size, not overlapping in memory
    (the C loops' restrict), the first and those from ``writable_from`` on writeable; else
    0 (the optimizer then takes its NumPy path, which converts or raises)."""
    cdef Py_ssize_t n = -1, i, j, k = 0
    cdef int typenum = -1
    cdef cnp.ndarray a
    cdef char* lo[4]
    cdef char* hi[4]
    for i in range(len(arrays)):
        if arrays[i] is None:
            continue
        if type(arrays[i]) is not np.ndarray or k == 4:
            return 0
        a = <cnp.ndarray> arrays[i]
        if typenum < 0:
            typenum = cnp.PyArray_TYPE(a)
            if typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64:
                return 0
            n = cnp.PyArray_SIZE(a)
        elif cnp.PyArray_TYPE(a) != typenum or cnp.PyArray_SIZE(a) != n:
            return 0
        if not cnp.PyArray_IS_C_CONTIGUOUS(a) or ((i == 0 or i >= writable_from)
                                                 and not cnp.PyArray_ISWRITEABLE(a)):
            return 0
        lo[k] = <char*> cnp.PyArray_DATA(a)
        hi[k] = lo[k] + cnp.PyArray_NBYTES(a)
        for j in range(k):
            if lo[k] < hi[j] and lo[j] < hi[k]:
                return 0
        k += 1
    if typenum < 0:
        return 0
    return 4 if typenum == cnp.NPY_FLOAT32 else 8


def _adam_update(p, g, m, v, double b1, double b2, double step_size, double eps,
                 double weight_decay):
    """rnnfast.optim.Adam's update of one parameter in one pass (see _optim.h): the same
    values as its NumPy steps, bit for bit. Returns False (nothing done) unless the arrays
    are fusable()."""
    cdef int size = fusable((p, g, m, v), 2)
    cdef int decay = weight_decay != 0
    if not size:
        return False
    cdef Py_ssize_t n = p.size
    cdef void *pp = data(p), *gp = data(g), *mp = data(m), *vp = data(v)
    if size == 4:
        with nogil:
            rf_adam_f(n, <float*> pp, <const float*> gp, <float*> mp, <float*> vp,
                      <float> b1, <float> (1.0 - b1), <float> b2, <float> (1.0 - b2),
                      <float> step_size, <float> eps, <float> weight_decay, decay)
    else:
        with nogil:
            rf_adam_d(n, <double*> pp, <const double*> gp, <double*> mp, <double*> vp,
                      b1, 1.0 - b1, b2, 1.0 - b2, step_size, eps, weight_decay, decay)
    return True


def _adagrad_update(p, g, acc, double lr, double eps, double weight_decay):
    """rnnfast.optim.AdaGrad's update in one pass, bit for bit its NumPy steps; False
    (nothing done) unless the arrays are fusable()."""
    cdef int size = fusable((p, g, acc), 2)
    cdef int decay = weight_decay != 0
    if not size:
        return False
    cdef Py_ssize_t n = p.size
    cdef void *pp = data(p), *gp = data(g), *ap = data(acc)
    if size == 4:
        with nogil:
            rf_adagrad_f(n, <float*> pp, <const float*> gp, <float*> ap, <float> lr,
                         <float> eps, <float> weight_decay, decay)
    else:
        with nogil:
            rf_adagrad_d(n, <double*> pp, <const double*> gp, <double*> ap, lr, eps,
                         weight_decay, decay)
    return True


def _sgd_update(p, g, buf, double lr, double momentum, bint nesterov, double weight_decay):
    """rnnfast.optim.SGD's update in one pass (``buf`` None without momentum), bit for bit
    its NumPy steps; False (nothing done) unless the arrays are fusable()."""
    cdef int size = fusable((p, g, buf), 2)
    cdef int decay = weight_decay != 0
    if not size:
        return False
    cdef Py_ssize_t n = p.size
    cdef void *pp = data(p), *gp = data(g), *bp = data(buf)      # (buf None: NULL)
    if size == 4:
        with nogil:
            rf_sgd_f(n, <float*> pp, <const float*> gp, <float*> bp, <float> lr,
                     <float> momentum, nesterov, <float> weight_decay, decay)
    else:
        with nogil:
            rf_sgd_d(n, <double*> pp, <const double*> gp, <double*> bp, lr,
                     momentum, nesterov, weight_decay, decay)
    return True


# ----------------------------------------------------------------------------- a classifier's head
# A many-to-one classifier's minibatch ends in a dense layer, a softmax cross-entropy and
# their gradients: two dozen tiny NumPy calls (rnnfast.nn.Dense, rnnfast.losses), ~170 us of
# a digits minibatch in the training loop against ~550 us of LSTM. One call here instead.

cdef void head_step(floating tag, int B, int F, int C, const floating* h, const floating* W,
                    const floating* b, const Py_ssize_t* labels, floating* z, floating* e,
                    floating* dW, floating* db, floating* dh, double* loss,
                    Py_ssize_t* correct) noexcept nogil:
    """z (B, C) = h @ W + b, then the log-softmax, the loss at the label and the gradient
    (softmax - onehot) / B written over z; dW = h.T @ z, db = z's column sums, dh = z @
    W.T. The expressions are rnnfast.losses._cross_entropy_indices' and rnnfast.nn.Dense's,
    term by term; the exponentials of all rows at once into ``e`` (B, C), with the kernels'
    vectorized exp (libm's expf, one call a value, took a quarter of the head's time)."""
    cdef int i, j, best
    cdef Py_ssize_t label, n = <Py_ssize_t> B * C
    cdef floating* zi
    cdef floating* ei
    cdef floating m, s, lse, p
    cdef double total = 0.0
    cdef Py_ssize_t right = 0
    # z = h @ W (NumPy: out = x2 @ W; out += b)
    gemm(False, False, B, C, F, <floating> 1, h, F, W, C, <floating> 0, z, C)
    for i in range(B):
        zi = z + <Py_ssize_t> i * C
        label = labels[i]
        best = 0
        for j in range(C):
            zi[j] = zi[j] + b[j]
        m = zi[0]
        for j in range(1, C):
            # np.argmax: the first maximum, a NaN before anything (a NaN is the maximum);
            # np.maximum.reduce: NaN propagates
            if zi[best] == zi[best] and (zi[j] > zi[best] or zi[j] != zi[j]):
                best = j
            if m == m and (zi[j] > m or zi[j] != zi[j]):
                m = zi[j]
        right += best == label
        for j in range(C):          # z - max(z)
            zi[j] = zi[j] - m
    exp_array(n, z, e)              # exp(z - max(z))
    for i in range(B):
        zi = z + <Py_ssize_t> i * C
        ei = e + <Py_ssize_t> i * C
        s = 0
        for j in range(C):          # sum(exp(z - max(z)))
            s = s + ei[j]
        lse = logf(s) if floating is float else log(s)
        total += <double> (zi[labels[i]] - lse)         # log_softmax at the label
        for j in range(C):
            zi[j] = zi[j] - lse     # log_softmax
    exp_array(n, z, e)
    for i in range(B):              # exp(log_softmax) - onehot, over B
        zi = z + <Py_ssize_t> i * C
        ei = e + <Py_ssize_t> i * C
        label = labels[i]
        for j in range(C):
            p = ei[j]
            if j == label:
                p = p - 1
            zi[j] = p / B
    loss[0] = -total / B
    correct[0] = right
    # dW = h.T @ dz, db = sum over rows of dz, dh = dz @ W.T
    gemm(True, False, F, C, B, <floating> 1, h, F, z, C, <floating> 0, dW, C)
    for j in range(C):
        db[j] = 0
    for i in range(B):
        for j in range(C):
            db[j] = db[j] + z[<Py_ssize_t> i * C + j]
    gemm(False, True, B, F, C, <floating> 1, z, C, W, C, <floating> 0, dh, F)


def dense_cross_entropy(h, W, b, labels, dW, db):
    """A classifier head's training step in one call: the logits ``h @ W + b`` of the
    features ``h (B, F)``, the mean softmax cross-entropy against the class indices
    ``labels`` (B,) and its gradients, ``dW (F, C)`` and ``db (C,)`` written into the given
    arrays; returns ``(loss, correct, dh)``, the loss a float, ``correct`` how many rows'
    largest logit is at their label, ``dh`` the gradient of h (a new array). None when the
    arguments are not as the loops take them (C-contiguous aligned arrays of one float
    dtype, these shapes, intp labels, dW and db writeable and apart from the others, B, F,
    C >= 1): then Dense and the loss in NumPy. The labels are not checked: each must be in
    [0, C) (a model's, encoded once in fit)."""
    if type(W) is not np.ndarray or type(h) is not np.ndarray:
        return None
    cdef cnp.ndarray Wa = <cnp.ndarray> W, ha = <cnp.ndarray> h
    cdef int typenum = cnp.PyArray_TYPE(Wa)
    if (typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64) or (
            cnp.PyArray_NDIM(Wa) != 2 or cnp.PyArray_NDIM(ha) != 2):
        return None
    cdef Py_ssize_t B = cnp.PyArray_DIM(ha, 0), F = cnp.PyArray_DIM(Wa, 0)
    cdef Py_ssize_t C = cnp.PyArray_DIM(Wa, 1)
    cdef cnp.npy_intp dims[2]
    dims[0], dims[1] = B, F
    if B < 1 or F < 1 or C < 1 or B > BLAS_INDEX_MAX // max(F, C) or F * C > BLAS_INDEX_MAX:
        return None
    if not (ready(h, typenum, 2, dims) and ready(W, typenum, 2, cnp.PyArray_DIMS(Wa))
            and ready(dW, typenum, 2, cnp.PyArray_DIMS(Wa), True)):
        return None
    dims[0] = C
    if not (ready(b, typenum, 1, dims) and ready(db, typenum, 1, dims, True)):
        return None
    dims[0] = B
    if not ready(labels, cnp.NPY_INTP, 1, dims):
        return None
    cdef cnp.ndarray dWa = <cnp.ndarray> dW, dba = <cnp.ndarray> db
    for other in (h, W, b, labels):
        if not (apart(dWa, other) and apart(dba, other)):
            return None
    if not apart(dWa, db):
        return None
    cdef bint is_float = typenum == cnp.NPY_FLOAT32
    dims[0], dims[1] = B, C
    cdef cnp.ndarray z = empty(2, dims, is_float)
    cdef cnp.ndarray e = empty(2, dims, is_float)       # the exponentials
    dims[1] = F
    cdef cnp.ndarray dh = empty(2, dims, is_float)
    cdef double loss = 0
    cdef Py_ssize_t correct = 0
    cdef int Bi = <int> B, Fi = <int> F, Ci = <int> C
    cdef const Py_ssize_t* lab = <const Py_ssize_t*> cnp.PyArray_DATA(<cnp.ndarray> labels)
    cdef void* hp = data(h)
    cdef void* Wp = data(W)
    cdef void* bp = data(b)
    cdef void* zp = data(z)
    cdef void* ep = data(e)
    cdef void* dWp = data(dW)
    cdef void* dbp = data(db)
    cdef void* dhp = data(dh)
    with nogil:
        if is_float:
            head_step(<float> 0, Bi, Fi, Ci, <const float*> hp, <const float*> Wp,
                      <const float*> bp, lab, <float*> zp, <float*> ep, <float*> dWp,
                      <float*> dbp, <float*> dhp, &loss, &correct)
        else:
            head_step(<double> 0, Bi, Fi, Ci, <const double*> hp, <const double*> Wp,
                      <const double*> bp, lab, <double*> zp, <double*> ep, <double*> dWp,
                      <double*> dbp, <double*> dhp, &loss, &correct)
    return loss, correct, dh
