"""The compiled kernels of rnnfast: tanh/relu RNN and LSTM forward and BPTT.

Same functions, signatures and return values as ``rnnfast.reference`` (read its
docstring for the contract, which ``rnnfast._checks`` establishes: this module
trusts it and does not validate).

Layout. ``x``, ``out``, ``dx`` and the workspace share one row order: row
``t * ts + b * bs`` holds (step t, batch element b), with ``(ts, bs) = (1, T)``
when batch_first else ``(B, 1)``. So all steps form one matrix for the big
GEMMs, and one step is a strided matrix (leading dimension ``bs * width``) for
the per-step GEMM: no transposes in either layout.

Forward: one GEMM projects the inputs of every step; per step one GEMM adds
``h_{t-1} @ Wh`` into the gate rows and one fused, vectorized elementwise pass
(rnnfast/_elementwise.h) applies bias and activations. Backward: per step the
elementwise gate gradients and ``dh = dG_t @ Wh.T``; then ``dx``, ``dWx``,
``dWh`` are three GEMMs over all steps. The loops run without the GIL, with
denormals flushed to zero (restored afterwards).
"""
import numpy as np

cimport cython
from cython cimport floating
from libc.string cimport memcpy, memset

from rnnfast._blas cimport gemm


cdef extern from "_elementwise.h" nogil:
    unsigned int rf_denormals_off()
    void rf_denormals_restore(unsigned int old)
    void rf_tanh_array_f(Py_ssize_t n, const float* x, float* y)
    void rf_tanh_array_d(Py_ssize_t n, const double* x, double* y)
    void rf_sigmoid_array_f(Py_ssize_t n, const float* x, float* y)
    void rf_sigmoid_array_d(Py_ssize_t n, const double* x, double* y)
    void rf_rnn_forward_row_f(int n, int relu, float* a, const float* b, float* h_copy)
    void rf_rnn_forward_row_d(int n, int relu, double* a, const double* b, double* h_copy)
    void rf_rnn_backward_row_f(int n, int relu, const float* dout, const float* dh_rec,
                               const float* h, float* dpre)
    void rf_rnn_backward_row_d(int n, int relu, const double* dout, const double* dh_rec,
                               const double* h, double* dpre)
    void rf_lstm_forward_row_f(int n, float* gates, const float* b, const float* c_prev,
                               float* c, float* h, float* h_copy)
    void rf_lstm_forward_row_d(int n, double* gates, const double* b, const double* c_prev,
                               double* c, double* h, double* h_copy)
    void rf_lstm_backward_row_f(int n, float* gates, const float* c, const float* c_prev,
                                const float* dout, const float* dh_rec, float* dc)
    void rf_lstm_backward_row_d(int n, double* gates, const double* c, const double* c_prev,
                                const double* dout, const double* dh_rec, double* dc)
    void rf_add_column_sums_f(Py_ssize_t rows, int n, const float* src, Py_ssize_t ld,
                              float* dst)
    void rf_add_column_sums_d(Py_ssize_t rows, int n, const double* src, Py_ssize_t ld,
                              double* dst)


# ----------------------------------------------------------------------------- row helpers
# Fused front doors to the C row functions of _elementwise.h.

cdef inline void rnn_forward_row(int n, bint relu, floating* a, const floating* b,
                                 floating* h_copy) noexcept nogil:
    if floating is float:
        rf_rnn_forward_row_f(n, relu, a, b, h_copy)
    else:
        rf_rnn_forward_row_d(n, relu, a, b, h_copy)


cdef inline void rnn_backward_row(int n, bint relu, const floating* dout,
                                  const floating* dh_rec, const floating* h,
                                  floating* dpre) noexcept nogil:
    if floating is float:
        rf_rnn_backward_row_f(n, relu, dout, dh_rec, h, dpre)
    else:
        rf_rnn_backward_row_d(n, relu, dout, dh_rec, h, dpre)


cdef inline void lstm_forward_row(int n, floating* gates, const floating* b,
                                  const floating* c_prev, floating* c, floating* h,
                                  floating* h_copy) noexcept nogil:
    if floating is float:
        rf_lstm_forward_row_f(n, gates, b, c_prev, c, h, h_copy)
    else:
        rf_lstm_forward_row_d(n, gates, b, c_prev, c, h, h_copy)


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


cdef inline void copy_rows(int rows, int n, const floating* src, Py_ssize_t src_ld,
                           floating* dst, Py_ssize_t dst_ld) noexcept nogil:
    """dst[r, :n] = src[r, :n] for strided rows; src NULL means zeros."""
    cdef int r
    for r in range(rows):
        if src == NULL:
            memset(dst + r * dst_ld, 0, n * sizeof(floating))
        else:
            memcpy(dst + r * dst_ld, src + r * src_ld, n * sizeof(floating))


# ----------------------------------------------------------------------------- RNN kernels

cdef void rnn_forward_loop(int T, int B, int D, int H, bint relu, Py_ssize_t ts, Py_ssize_t bs,
                           const floating* x, const floating* h0, const floating* Wx,
                           const floating* Wh, const floating* b, floating* out,
                           floating* h_n, floating* hprev, floating* h_last) noexcept nogil:
    """out, h_n from x, h0 (NULL: zeros); hprev, h_last (NULL in inference) get the
    h_{t-1} of every row and h_{T-1} for BPTT."""
    cdef int t, bb
    cdef int ld_step = <int> (bs * H)          # leading dimension of one step's rows
    cdef floating* out_t
    cdef floating* h_copy
    # out = x @ Wx over every step at once (bias comes in the elementwise pass)
    gemm(False, False, B * T, H, D, <floating> 1, x, D, Wx, H, <floating> 0, out, H)
    if hprev != NULL:
        copy_rows(B, H, h0, H, hprev, ld_step)            # h_{-1} rows
    for t in range(T):
        out_t = out + t * ts * H
        if t > 0:
            # out_t += out_{t-1} @ Wh
            gemm(False, False, B, H, H, <floating> 1, out_t - ts * H, ld_step, Wh, H,
                 <floating> 1, out_t, ld_step)
        elif h0 != NULL:
            # out_0 += h0 @ Wh (skipped for a zero initial state)
            gemm(False, False, B, H, H, <floating> 1, h0, H, Wh, H, <floating> 1, out_t,
                 ld_step)
        for bb in range(B):
            h_copy = NULL
            if hprev != NULL:
                h_copy = hprev + ((t + 1) * ts + bb * bs) * H if t + 1 < T else h_last + bb * H
            rnn_forward_row(H, relu, out_t + bb * bs * H, b, h_copy)
    copy_rows(B, H, out + (T - 1) * ts * H, ld_step, h_n, H)


cdef void rnn_backward_loop(int T, int B, int D, int H, bint relu, Py_ssize_t ts,
                            Py_ssize_t bs, const floating* dout, const floating* zero_row,
                            const floating* x, const floating* Wx, const floating* Wh,
                            const floating* hprev, const floating* h_last, floating* dG,
                            floating* dh_rec, floating* dx, floating* dWx, floating* dWh,
                            floating* db) noexcept nogil:
    """BPTT. dh_rec enters holding dL/dh_{T-1} from the final state and leaves holding dh0.
    dout NULL: no gradient on the outputs (zero_row stands in)."""
    cdef int t, bb
    cdef Py_ssize_t row
    cdef Py_ssize_t rows = <Py_ssize_t> B * T
    cdef int ld_step = <int> (bs * H)
    cdef const floating* h_row
    cdef const floating* dout_row
    for t in range(T - 1, -1, -1):
        for bb in range(B):
            row = t * ts + bb * bs
            h_row = hprev + (row + ts) * H if t + 1 < T else h_last + bb * H
            dout_row = zero_row if dout == NULL else dout + row * H
            rnn_backward_row(H, relu, dout_row, dh_rec + bb * H, h_row, dG + row * H)
        # dh_rec = dG_t @ Wh.T
        gemm(False, True, B, H, H, <floating> 1, dG + t * ts * H, ld_step, Wh, H,
             <floating> 0, dh_rec, H)
    # the deferred GEMMs over all steps: dx = dG @ Wx.T, dWx = x.T @ dG, dWh = hprev.T @ dG
    gemm(False, True, B * T, D, H, <floating> 1, dG, H, Wx, H, <floating> 0, dx, D)
    gemm(True, False, D, H, B * T, <floating> 1, x, D, dG, H, <floating> 0, dWx, H)
    gemm(True, False, H, H, B * T, <floating> 1, hprev, H, dG, H, <floating> 0, dWh, H)
    memset(db, 0, H * sizeof(floating))
    add_column_sums(rows, H, dG, H, db)                     # db = dG.sum(axis=0)


cdef void rnn_forward_typed(bint relu, bint batch_first, const floating[:, :, ::1] x,
                            const floating[:, ::1] h0, const floating[:, ::1] Wx,
                            const floating[:, ::1] Wh, const floating[::1] b,
                            floating[:, :, ::1] out, floating[:, ::1] h_n,
                            floating[:, :, ::1] hprev, floating[:, ::1] h_last):
    cdef int T = x.shape[1] if batch_first else x.shape[0]
    cdef int B = x.shape[0] if batch_first else x.shape[1]
    cdef Py_ssize_t ts = 1 if batch_first else B
    cdef Py_ssize_t bs = T if batch_first else 1
    # optional arrays (None) become NULL pointers
    cdef const floating* h0_p = NULL if h0 is None else &h0[0, 0]
    cdef floating* hprev_p = NULL if hprev is None else &hprev[0, 0, 0]
    cdef floating* h_last_p = NULL if h_last is None else &h_last[0, 0]
    cdef unsigned int csr
    with nogil:
        csr = rf_denormals_off()
        rnn_forward_loop(T, B, <int> x.shape[2], <int> Wh.shape[0], relu, ts, bs, &x[0, 0, 0],
                         h0_p, &Wx[0, 0], &Wh[0, 0], &b[0], &out[0, 0, 0], &h_n[0, 0],
                         hprev_p, h_last_p)
        rf_denormals_restore(csr)


cdef void rnn_backward_typed(bint relu, bint batch_first, const floating[:, :, ::1] dout,
                             const floating[:, :, ::1] x, const floating[:, ::1] Wx,
                             const floating[:, ::1] Wh, const floating[:, :, ::1] hprev,
                             const floating[:, ::1] h_last, floating[:, :, ::1] dG,
                             floating[:, ::1] dh_rec, floating[::1] zero_row,
                             floating[:, :, ::1] dx, floating[:, ::1] dWx,
                             floating[:, ::1] dWh, floating[::1] db):
    cdef int T = x.shape[1] if batch_first else x.shape[0]
    cdef int B = x.shape[0] if batch_first else x.shape[1]
    cdef Py_ssize_t ts = 1 if batch_first else B
    cdef Py_ssize_t bs = T if batch_first else 1
    cdef const floating* dout_p = NULL if dout is None else &dout[0, 0, 0]
    cdef unsigned int csr
    with nogil:
        csr = rf_denormals_off()
        rnn_backward_loop(T, B, <int> x.shape[2], <int> Wh.shape[0], relu, ts, bs, dout_p,
                          &zero_row[0], &x[0, 0, 0], &Wx[0, 0], &Wh[0, 0], &hprev[0, 0, 0],
                          &h_last[0, 0], &dG[0, 0, 0], &dh_rec[0, 0], &dx[0, 0, 0],
                          &dWx[0, 0], &dWh[0, 0], &db[0])
        rf_denormals_restore(csr)


# ----------------------------------------------------------------------------- LSTM kernels

cdef void lstm_forward_loop(int T, int B, int D, int H, Py_ssize_t ts, Py_ssize_t bs,
                            const floating* x, const floating* h0, const floating* Wx,
                            const floating* Wh, const floating* b, floating* gates,
                            floating* c_state, floating* out, floating* h_n, floating* c_n,
                            floating* c_all, floating* hprev) noexcept nogil:
    """out, h_n, c_n from x, h0 (NULL: zeros) and c_state, which holds c0 (or zeros).

    Inference (c_all, hprev NULL): c_state is updated in place, step after step.
    Training: c_all gets c_t of every row and hprev the h_{t-1} of every row; gates
    keeps the activated i, f, g, o for BPTT.
    """
    cdef int t, bb
    cdef int G = 4 * H
    cdef int ld_h = <int> (bs * H)                 # leading dimension of one step's h rows
    cdef int ld_g = <int> (bs * G)                 # ... and of its gate rows
    cdef Py_ssize_t row
    cdef floating* gates_t
    cdef const floating* c_prev
    cdef floating* c_out
    cdef floating* h_copy
    # gates = x @ Wx over every step at once
    gemm(False, False, B * T, G, D, <floating> 1, x, D, Wx, G, <floating> 0, gates, G)
    if hprev != NULL:
        copy_rows(B, H, h0, H, hprev, ld_h)               # h_{-1} rows
    for t in range(T):
        gates_t = gates + t * ts * G
        if t > 0:
            # gates_t += out_{t-1} @ Wh
            gemm(False, False, B, G, H, <floating> 1, out + (t - 1) * ts * H, ld_h, Wh, G,
                 <floating> 1, gates_t, ld_g)
        elif h0 != NULL:
            # gates_0 += h0 @ Wh (skipped for a zero initial state)
            gemm(False, False, B, G, H, <floating> 1, h0, H, Wh, G, <floating> 1, gates_t,
                 ld_g)
        for bb in range(B):
            row = t * ts + bb * bs
            if c_all == NULL:
                c_prev = c_state + bb * H
                c_out = c_state + bb * H
                h_copy = NULL
            else:
                c_prev = c_all + (row - ts) * H if t > 0 else c_state + bb * H
                c_out = c_all + row * H
                h_copy = hprev + (row + ts) * H if t + 1 < T else NULL
            lstm_forward_row(H, gates + row * G, b, c_prev, c_out, out + row * H, h_copy)
    copy_rows(B, H, out + (T - 1) * ts * H, ld_h, h_n, H)
    if c_all == NULL:
        copy_rows(B, H, c_state, H, c_n, H)
    else:
        copy_rows(B, H, c_all + (T - 1) * ts * H, ld_h, c_n, H)


cdef void lstm_backward_loop(int T, int B, int D, int H, Py_ssize_t ts, Py_ssize_t bs,
                             const floating* dout, const floating* zero_row, const floating* x,
                             const floating* Wx, const floating* Wh, const floating* hprev,
                             const floating* c_all, const floating* c0, floating* gates,
                             floating* dh_rec, floating* dc, floating* dx, floating* dWx,
                             floating* dWh, floating* db) noexcept nogil:
    """BPTT, overwriting the activated gates with their gradients dG.

    dh_rec and dc enter holding dL/dh_{T-1}, dL/dc_{T-1} from the final state and
    leave holding dh0, dc0. dout NULL: no gradient on the outputs.
    """
    cdef int t, bb
    cdef int G = 4 * H
    cdef int ld_g = <int> (bs * G)
    cdef Py_ssize_t row
    cdef Py_ssize_t rows = <Py_ssize_t> B * T
    cdef const floating* c_prev
    cdef const floating* dout_row
    for t in range(T - 1, -1, -1):
        for bb in range(B):
            row = t * ts + bb * bs
            c_prev = c_all + (row - ts) * H if t > 0 else c0 + bb * H
            dout_row = zero_row if dout == NULL else dout + row * H
            lstm_backward_row(H, gates + row * G, c_all + row * H, c_prev, dout_row,
                              dh_rec + bb * H, dc + bb * H)
        # dh_rec = dG_t @ Wh.T
        gemm(False, True, B, H, G, <floating> 1, gates + t * ts * G, ld_g, Wh, G,
             <floating> 0, dh_rec, H)
    # the deferred GEMMs over all steps: dx = dG @ Wx.T, dWx = x.T @ dG, dWh = hprev.T @ dG
    gemm(False, True, B * T, D, G, <floating> 1, gates, G, Wx, G, <floating> 0, dx, D)
    gemm(True, False, D, G, B * T, <floating> 1, x, D, gates, G, <floating> 0, dWx, G)
    gemm(True, False, H, G, B * T, <floating> 1, hprev, H, gates, G, <floating> 0, dWh, G)
    memset(db, 0, G * sizeof(floating))
    add_column_sums(rows, G, gates, G, db)                  # db = dG.sum(axis=0)


cdef void lstm_forward_typed(bint batch_first, const floating[:, :, ::1] x,
                             const floating[:, ::1] h0, const floating[:, ::1] Wx,
                             const floating[:, ::1] Wh, const floating[::1] b,
                             floating[:, :, ::1] gates, floating[:, ::1] c_state,
                             floating[:, :, ::1] out, floating[:, ::1] h_n,
                             floating[:, ::1] c_n, floating[:, :, ::1] c_all,
                             floating[:, :, ::1] hprev):
    cdef int T = x.shape[1] if batch_first else x.shape[0]
    cdef int B = x.shape[0] if batch_first else x.shape[1]
    cdef Py_ssize_t ts = 1 if batch_first else B
    cdef Py_ssize_t bs = T if batch_first else 1
    # optional arrays (None) become NULL pointers
    cdef const floating* h0_p = NULL if h0 is None else &h0[0, 0]
    cdef floating* c_all_p = NULL if c_all is None else &c_all[0, 0, 0]
    cdef floating* hprev_p = NULL if hprev is None else &hprev[0, 0, 0]
    cdef unsigned int csr
    with nogil:
        csr = rf_denormals_off()
        lstm_forward_loop(T, B, <int> x.shape[2], <int> Wh.shape[0], ts, bs, &x[0, 0, 0], h0_p,
                          &Wx[0, 0], &Wh[0, 0], &b[0], &gates[0, 0, 0], &c_state[0, 0],
                          &out[0, 0, 0], &h_n[0, 0], &c_n[0, 0], c_all_p, hprev_p)
        rf_denormals_restore(csr)


cdef void lstm_backward_typed(bint batch_first, const floating[:, :, ::1] dout,
                              const floating[:, :, ::1] x, const floating[:, ::1] Wx,
                              const floating[:, ::1] Wh, const floating[:, :, ::1] hprev,
                              const floating[:, :, ::1] c_all, const floating[:, ::1] c0,
                              floating[:, :, ::1] gates, floating[:, ::1] dh_rec,
                              floating[:, ::1] dc, floating[::1] zero_row,
                              floating[:, :, ::1] dx, floating[:, ::1] dWx,
                              floating[:, ::1] dWh, floating[::1] db):
    cdef int T = x.shape[1] if batch_first else x.shape[0]
    cdef int B = x.shape[0] if batch_first else x.shape[1]
    cdef Py_ssize_t ts = 1 if batch_first else B
    cdef Py_ssize_t bs = T if batch_first else 1
    cdef const floating* dout_p = NULL if dout is None else &dout[0, 0, 0]
    cdef unsigned int csr
    with nogil:
        csr = rf_denormals_off()
        lstm_backward_loop(T, B, <int> x.shape[2], <int> Wh.shape[0], ts, bs, dout_p,
                           &zero_row[0], &x[0, 0, 0], &Wx[0, 0], &Wh[0, 0], &hprev[0, 0, 0],
                           &c_all[0, 0, 0], &c0[0, 0], &gates[0, 0, 0], &dh_rec[0, 0],
                           &dc[0, 0], &dx[0, 0, 0], &dWx[0, 0], &dWh[0, 0], &db[0])
        rf_denormals_restore(csr)


# ----------------------------------------------------------------------------- Python faces

def _dims(x, Wh, batch_first):
    """(batch, seq_len, hidden) of a call."""
    B, T = (x.shape[0], x.shape[1]) if batch_first else (x.shape[1], x.shape[0])
    return B, T, Wh.shape[0]


def _state_or_zeros(s, B, H, dtype):
    return np.zeros((B, H), dtype) if s is None else np.array(s, dtype=dtype, copy=True)


def _empty_grads(x, Wx, Wh):
    dt = Wx.dtype
    return (np.zeros(x.shape, dt), np.zeros(Wx.shape, dt), np.zeros(Wh.shape, dt),
            np.zeros(Wh.shape[1], dt))


def rnn_forward(x, h0, Wx, Wh, b, nonlinearity="tanh", batch_first=True, training=True):
    """Returns ``(out, h_n, workspace)``; workspace is None unless ``training``."""
    B, T, H = _dims(x, Wh, batch_first)
    dt = Wx.dtype
    out = np.empty(x.shape[:2] + (H,), dt)
    workspace = None
    if training:
        workspace = {"backend": "cython", "cell": "rnn", "nonlinearity": nonlinearity,
                     "batch_first": batch_first, "dims": (B, T, H),
                     "hprev": np.empty(out.shape, dt), "h_last": np.empty((B, H), dt)}
    if T == 0:
        return out, _state_or_zeros(h0, B, H, dt), workspace
    h_n = np.empty((B, H), dt)
    hprev = workspace["hprev"] if training else None
    h_last = workspace["h_last"] if training else None
    if dt == np.float32:
        rnn_forward_typed[float](nonlinearity == "relu", batch_first, x, h0, Wx, Wh, b, out,
                                 h_n, hprev, h_last)
    else:
        rnn_forward_typed[double](nonlinearity == "relu", batch_first, x, h0, Wx, Wh, b, out,
                                  h_n, hprev, h_last)
    return out, h_n, workspace


def rnn_backward(dout, dh_n, x, Wx, Wh, workspace, nonlinearity="tanh", batch_first=True):
    """Returns ``(dx, dh0, dWx, dWh, db)``."""
    B, T, H = _dims(x, Wh, batch_first)
    dt = Wx.dtype
    dh_rec = _state_or_zeros(dh_n, B, H, dt)        # becomes dh0
    if T == 0:
        dx, dWx, dWh, db = _empty_grads(x, Wx, Wh)
        return dx, dh_rec, dWx, dWh, db
    dG = np.empty(x.shape[:2] + (H,), dt)
    dx = np.empty(x.shape, dt)
    dWx = np.empty(Wx.shape, dt)
    dWh = np.empty(Wh.shape, dt)
    db = np.empty(H, dt)
    zero_row = np.zeros(H, dt)
    if dt == np.float32:
        rnn_backward_typed[float](nonlinearity == "relu", batch_first, dout, x, Wx, Wh,
                                  workspace["hprev"], workspace["h_last"], dG, dh_rec,
                                  zero_row, dx, dWx, dWh, db)
    else:
        rnn_backward_typed[double](nonlinearity == "relu", batch_first, dout, x, Wx, Wh,
                                   workspace["hprev"], workspace["h_last"], dG, dh_rec,
                                   zero_row, dx, dWx, dWh, db)
    return dx, dh_rec, dWx, dWh, db


def lstm_forward(x, h0, c0, Wx, Wh, b, batch_first=True, training=True):
    """Returns ``(out, h_n, c_n, workspace)``; workspace is None unless ``training``."""
    B, T, H = _dims(x, Wh, batch_first)
    dt = Wx.dtype
    out = np.empty(x.shape[:2] + (H,), dt)
    c_state = _state_or_zeros(c0, B, H, dt)         # c0; updated in place in inference
    workspace = None
    if training:
        workspace = {"backend": "cython", "cell": "lstm", "batch_first": batch_first,
                     "dims": (B, T, H), "gates": np.empty(x.shape[:2] + (4 * H,), dt),
                     "c": np.empty(out.shape, dt), "hprev": np.empty(out.shape, dt),
                     "c0": c_state}
    if T == 0:
        return out, _state_or_zeros(h0, B, H, dt), c_state.copy(), workspace
    gates = workspace["gates"] if training else np.empty(x.shape[:2] + (4 * H,), dt)
    c_all = workspace["c"] if training else None
    hprev = workspace["hprev"] if training else None
    h_n = np.empty((B, H), dt)
    c_n = np.empty((B, H), dt)
    if dt == np.float32:
        lstm_forward_typed[float](batch_first, x, h0, Wx, Wh, b, gates, c_state, out, h_n, c_n,
                                  c_all, hprev)
    else:
        lstm_forward_typed[double](batch_first, x, h0, Wx, Wh, b, gates, c_state, out, h_n,
                                   c_n, c_all, hprev)
    return out, h_n, c_n, workspace


def lstm_backward(dout, dh_n, dc_n, x, Wx, Wh, workspace, batch_first=True):
    """Returns ``(dx, dh0, dc0, dWx, dWh, db)``. Overwrites the workspace's gates."""
    B, T, H = _dims(x, Wh, batch_first)
    dt = Wx.dtype
    dh_rec = _state_or_zeros(dh_n, B, H, dt)        # becomes dh0
    dc = _state_or_zeros(dc_n, B, H, dt)            # becomes dc0
    if T == 0:
        dx, dWx, dWh, db = _empty_grads(x, Wx, Wh)
        return dx, dh_rec, dc, dWx, dWh, db
    dx = np.empty(x.shape, dt)
    dWx = np.empty(Wx.shape, dt)
    dWh = np.empty(Wh.shape, dt)
    db = np.empty(4 * H, dt)
    zero_row = np.zeros(H, dt)
    if dt == np.float32:
        lstm_backward_typed[float](batch_first, dout, x, Wx, Wh, workspace["hprev"],
                                   workspace["c"], workspace["c0"], workspace["gates"], dh_rec,
                                   dc, zero_row, dx, dWx, dWh, db)
    else:
        lstm_backward_typed[double](batch_first, dout, x, Wx, Wh, workspace["hprev"],
                                    workspace["c"], workspace["c0"], workspace["gates"],
                                    dh_rec, dc, zero_row, dx, dWx, dWh, db)
    return dx, dh_rec, dc, dWx, dWh, db


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
