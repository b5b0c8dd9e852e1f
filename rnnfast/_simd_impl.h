/* Body of _simd.h, compiled once per SIMD path and REAL (float, double) by _simd_paths.h;
 * see there. Names get the suffix SFX: rf_tanh_array_f_v4, rf_tanh_array_d_base, and so
 * on.
 *
 * Every row function works on one batch row of n = hidden values; the gate
 * rows hold 4n values in the order i, f, g, o. The expressions follow
 * rnnfast/reference.py term by term so both round alike. */

/* (exp(r) - 1) / r = 1 + r/2! + r^2/3! + ... for a reduced argument |r| <= ln2/2, by Horner:
 * the Taylor polynomial of exp(r) is 1 + r * this (float: degree 7, double: degree 13; both
 * under one ulp on that range), and that of expm1(r), without the 1 that cancels, r * this. */
static inline __attribute__((always_inline)) REAL SFX(rf_expm1_over_r)(REAL r) {
#if RF_EXP_DEGREE == 13
    REAL p = (REAL)(1.0 / 6227020800.0);              /* 1/13! */
    p = p * r + (REAL)(1.0 / 479001600.0);
    p = p * r + (REAL)(1.0 / 39916800.0);
    p = p * r + (REAL)(1.0 / 3628800.0);
    p = p * r + (REAL)(1.0 / 362880.0);
    p = p * r + (REAL)(1.0 / 40320.0);
    p = p * r + (REAL)(1.0 / 5040.0);
#else
    REAL p = (REAL)(1.0 / 5040.0);                    /* 1/7! */
#endif
    p = p * r + (REAL)(1.0 / 720.0);
    p = p * r + (REAL)(1.0 / 120.0);
    p = p * r + (REAL)(1.0 / 24.0);
    p = p * r + (REAL)(1.0 / 6.0);
    p = p * r + (REAL)0.5;
    return p * r + (REAL)1.0;
}

/* exp(x): x = n ln2 + r with |r| <= ln2/2, exp(r) by its Taylor polynomial, times 2^n built
 * from bits. Clamped so that exp(-inf) is a normal tiny number and exp(+large) is +inf; NaN
 * stays NaN (the clamps compare false). */
static inline __attribute__((always_inline)) REAL SFX(rf_exp)(REAL x) {
    x = x < RF_EXP_LO ? RF_EXP_LO : x;
    x = x > RF_EXP_HI ? RF_EXP_HI : x;
    const REAL shifted = x * RF_LOG2E + RF_SHIFTER;   /* round(x / ln2) in the low bits */
    const REAL n = shifted - RF_SHIFTER;
    REAL r = x - n * RF_LN2_HI;                       /* Cody-Waite: exact for |n| < 2^10 */
    r = r - n * RF_LN2_LO;
    const REAL exp_r = SFX(rf_expm1_over_r)(r) * r + 1;
    return exp_r * RSFX(rf_pow2_from_shifted)(shifted);
}

/* tanh(x) = expm1(2x) / (expm1(2x) + 2), with expm1(2x) = 2^n (1 + q) - 1 computed as
 * 2^n q + (2^n - 1), 2x = n ln2 + r, q = expm1(r) by its Taylor polynomial (as in rf_exp).
 * Near 0 (n = 0) this is q itself, so nothing cancels and no second formula is needed for
 * small arguments; 2^n - 1 is exact for the n that matter. One branch-free path: ~20
 * operations where 1 - 2/(exp(2|x|) + 1) beside a small-argument polynomial took ~30, and
 * a third of the error (float 2.4e-7 relative, double 4.4e-16; measured against tanhl over
 * every float and 2e7 doubles). |x| is clamped where tanh rounds to exactly +-1; NaN stays
 * NaN (the clamps compare false). */
static inline __attribute__((always_inline)) REAL SFX(rf_tanh)(REAL x) {
    x = x < -RF_TANH_SATURATE ? -RF_TANH_SATURATE : x;
    x = x > RF_TANH_SATURATE ? RF_TANH_SATURATE : x;
    const REAL two_x = x + x;
    const REAL shifted = two_x * RF_LOG2E + RF_SHIFTER;    /* round(2x / ln2) in the low bits */
    const REAL n = shifted - RF_SHIFTER;
    REAL r = two_x - n * RF_LN2_HI;                        /* as in rf_exp */
    r = r - n * RF_LN2_LO;
    const REAL q = SFX(rf_expm1_over_r)(r) * r;
    const REAL two_n = RSFX(rf_pow2_from_shifted)(shifted);
    const REAL expm1_2x = two_n * q + (two_n - 1);
    return expm1_2x / (expm1_2x + 2);
}

/* sigmoid(x) = 1 / (1 + exp(-x)): exactly 0 and 1 in saturation, no cancellation. */
static inline __attribute__((always_inline)) REAL SFX(rf_sigmoid)(REAL x) {
    return 1 / (1 + SFX(rf_exp)(-x));
}

/* Vectorizable bulk versions: exp for the classifier head's softmax (_core.head_step),
 * tanh and sigmoid for the unit tests of the approximations. */
static void SFX(rf_exp_array)(ptrdiff_t n, const REAL* restrict x, REAL* restrict y) {
    for (ptrdiff_t j = 0; j < n; j++) y[j] = SFX(rf_exp)(x[j]);
}
static void SFX(rf_tanh_array)(ptrdiff_t n, const REAL* restrict x, REAL* restrict y) {
    for (ptrdiff_t j = 0; j < n; j++) y[j] = SFX(rf_tanh)(x[j]);
}
static void SFX(rf_sigmoid_array)(ptrdiff_t n, const REAL* restrict x,
                                   REAL* restrict y) {
    for (ptrdiff_t j = 0; j < n; j++) y[j] = SFX(rf_sigmoid)(x[j]);
}

/* RNN forward, one row: h = act(a + b), a = x_t Wx + h_{t-1} Wh from the GEMMs;
 * h goes to the state buffer (read by the next step) and to the user's output row. */
static void SFX(rf_rnn_forward_row)(int n, int act, const REAL* restrict a,
                                     const REAL* restrict b, REAL* restrict h,
                                     REAL* restrict h_out) {
    if (act == RF_ACT_RELU) {
        for (int j = 0; j < n; j++) {
            const REAL v = a[j] + b[j];
            h[j] = v < 0 ? 0 : v;                 /* NaN passes through, as np.maximum */
        }
    } else if (act == RF_ACT_SIGMOID) {
        for (int j = 0; j < n; j++) h[j] = SFX(rf_sigmoid)(a[j] + b[j]);
    } else {
        for (int j = 0; j < n; j++) h[j] = SFX(rf_tanh)(a[j] + b[j]);
    }
    for (int j = 0; j < n; j++) h_out[j] = h[j];
}

/* RNN backward, one row: dpre = (dh_rec + dout) * act'(a), act' from h = act(a). */
static void SFX(rf_rnn_backward_row)(int n, int act, const REAL* restrict dout,
                                      const REAL* restrict dh_rec,
                                      const REAL* restrict h, REAL* restrict dpre) {
    if (act == RF_ACT_RELU) {
        for (int j = 0; j < n; j++) {
            const REAL dh = dh_rec[j] + dout[j];
            dpre[j] = dh * (h[j] > 0 ? (REAL)1 : (REAL)0);
        }
    } else if (act == RF_ACT_SIGMOID) {
        for (int j = 0; j < n; j++) {
            const REAL dh = dh_rec[j] + dout[j];
            dpre[j] = dh * (h[j] * (1 - h[j]));
        }
    } else {
        for (int j = 0; j < n; j++) {
            const REAL dh = dh_rec[j] + dout[j];
            dpre[j] = dh * (1 - h[j] * h[j]);
        }
    }
}

/* LSTM forward, one row. gates: in x_t Wx + h_{t-1} Wh (4n, no bias), out the
 * activated i, f, g, o (kept for BPTT). c_prev, c: the cell state before and
 * after; h: the new hidden state, also copied to the user's output row h_out.
 *
 * Gate by gate, then the state: one loop computing all five transcendentals of a unit
 * chains them (c needs i, f, g; h needs tanh(c)), ~170 cycles of latency per vector,
 * which the out-of-order core could not hide (5.4 ns per unit, 3x the throughput of five
 * exp). Here each loop's iterations are independent. Same operations per value. */
static void SFX(rf_lstm_forward_row)(int n, REAL* restrict gates, const REAL* restrict b,
                                      const REAL* restrict c_prev, REAL* restrict c,
                                      REAL* restrict h, REAL* restrict h_out) {
    for (int j = 0; j < 2 * n; j++)                              /* i, f */
        gates[j] = SFX(rf_sigmoid)(gates[j] + b[j]);
    for (int j = 2 * n; j < 3 * n; j++)                          /* g */
        gates[j] = SFX(rf_tanh)(gates[j] + b[j]);
    for (int j = 3 * n; j < 4 * n; j++)                          /* o */
        gates[j] = SFX(rf_sigmoid)(gates[j] + b[j]);
    const REAL* restrict gi = gates;
    const REAL* restrict gf = gates + n;
    const REAL* restrict gg = gates + 2 * n;
    const REAL* restrict go = gates + 3 * n;
    for (int j = 0; j < n; j++) {
        const REAL c_new = gf[j] * c_prev[j] + gi[j] * gg[j];
        const REAL h_new = go[j] * SFX(rf_tanh)(c_new);
        c[j] = c_new;
        h[j] = h_new;
        h_out[j] = h_new;
    }
}

/* LSTM backward, one row. gates: in the activated i, f, g, o of the forward,
 * out their pre-activation gradients. dc: in dL/dc_t carried from step t+1,
 * out dL/dc_{t-1}. dh = dh_rec + dout is dL/dh_t. */
static void SFX(rf_lstm_backward_row)(int n, REAL* restrict gates,
                                       const REAL* restrict c,
                                       const REAL* restrict c_prev,
                                       const REAL* restrict dout,
                                       const REAL* restrict dh_rec,
                                       REAL* restrict dc) {
    REAL* restrict gi = gates;
    REAL* restrict gf = gates + n;
    REAL* restrict gg = gates + 2 * n;
    REAL* restrict go = gates + 3 * n;
    for (int j = 0; j < n; j++) {
        const REAL i = gi[j], f = gf[j], g = gg[j], o = go[j];
        const REAL dh = dh_rec[j] + dout[j];
        const REAL tanh_c = SFX(rf_tanh)(c[j]);
        const REAL dc_t = dc[j] + dh * o * (1 - tanh_c * tanh_c);
        gi[j] = dc_t * g * i * (1 - i);
        gf[j] = dc_t * c_prev[j] * f * (1 - f);
        gg[j] = dc_t * i * (1 - g * g);
        go[j] = dh * tanh_c * o * (1 - o);
        dc[j] = dc_t * f;
    }
}

/* GRU forward, one row (PyTorch's formulation). gates: in x_t Wx (3n, no bias), out the
 * activated r, z, n (kept for BPTT); hgates: in h_{t-1} Wh (3n), out with its n part
 * replaced by hn = h_{t-1} Wh_n + b_hn, the reset gate's operand (kept for BPTT). h: the
 * new hidden state, also copied to the user's output row h_out.
 *   r = sigmoid(x Wx_r + b_r + h Wh_r), z likewise, n = tanh(x Wx_n + b_n + r * hn),
 *   h' = (1 - z) * n + z * h
 * Gate by gate, as the LSTM's row (independent iterations in each loop). */
static void SFX(rf_gru_forward_row)(int n, REAL* restrict gates,
                                     REAL* restrict hgates, const REAL* restrict b,
                                     const REAL* restrict b_hn,
                                     const REAL* restrict h_prev, REAL* restrict h,
                                     REAL* restrict h_out) {
    for (int j = 0; j < 2 * n; j++)                              /* r, z */
        gates[j] = SFX(rf_sigmoid)((gates[j] + b[j]) + hgates[j]);
    const REAL* restrict gr = gates;
    const REAL* restrict gz = gates + n;
    REAL* restrict gn = gates + 2 * n;
    REAL* restrict hn = hgates + 2 * n;
    const REAL* restrict bn = b + 2 * n;
    for (int j = 0; j < n; j++) {                                /* n */
        const REAL hn_j = hn[j] + b_hn[j];
        hn[j] = hn_j;
        gn[j] = SFX(rf_tanh)((gn[j] + bn[j]) + gr[j] * hn_j);
    }
    for (int j = 0; j < n; j++) {
        const REAL h_new = (1 - gz[j]) * gn[j] + gz[j] * h_prev[j];
        h[j] = h_new;
        h_out[j] = h_new;
    }
}

/* GRU backward, one row. gates: in the activated r, z, n, out dG, the gradients of the
 * input side's pre-activations (x Wx + b); hgates: in (its n part) hn, out dGh, the
 * gradients of the hidden side's products (h Wh, and + b_hn): dG but for the n part,
 * which r scales. dh_rec: in dL/dh_t carried from step t+1 (dh = dh_rec + dout), out the
 * part of dL/dh_{t-1} that does not pass through h_{t-1} Wh: dh * z (the caller adds
 * dGh @ Wh.T). */
static void SFX(rf_gru_backward_row)(int n, REAL* restrict gates,
                                      REAL* restrict hgates,
                                      const REAL* restrict h_prev,
                                      const REAL* restrict dout,
                                      REAL* restrict dh_rec) {
    REAL* restrict gr = gates;
    REAL* restrict gz = gates + n;
    REAL* restrict gn = gates + 2 * n;
    REAL* restrict hr = hgates;
    REAL* restrict hz = hgates + n;
    REAL* restrict hn = hgates + 2 * n;
    for (int j = 0; j < n; j++) {
        const REAL r = gr[j], z = gz[j], nn = gn[j];
        const REAL dh = dh_rec[j] + dout[j];
        const REAL dn = dh * (1 - z);
        const REAL dz = dh * (h_prev[j] - nn);
        const REAL da_n = dn * (1 - nn * nn);
        const REAL dr = da_n * hn[j];
        const REAL da_r = dr * r * (1 - r);
        const REAL da_z = dz * z * (1 - z);
        gr[j] = da_r;
        gz[j] = da_z;
        gn[j] = da_n;
        hr[j] = da_r;
        hz[j] = da_z;
        hn[j] = da_n * r;
        dh_rec[j] = dh * z;
    }
}

/* ---- The per-step product C(m, n) (+)= A(m, k) @ W(k, n) on a pre-packed W.
 *
 * BLAS re-packs the weight matrix on every call; per time step, with only
 * batch rows to multiply, that copy costs as much as the multiply-adds (perf:
 * sgemm_itcopy 28% vs sgemm_kernel 27% of an LSTM forward). So W is packed
 * once per forward/backward call, in panels of RF_NR columns (Wp[p][k][0:NR],
 * zero-padded), and a register-blocked micro-kernel keeps an MR x NR block of
 * C in registers while it streams the panel. NR * sizeof(REAL) = 128 bytes:
 * two AVX-512 registers per row of the block, or four AVX2 ones.
 *
 * The micro-kernels come in widths chosen at run time (`wide`: the CPU has AVX-512):
 * 64-byte vectors for AVX-512 (8 x 2 blocks), and on the narrow paths 32-byte ones for AVX2
 * and 16-byte ones for the baseline (6-row blocks on parts of a panel, RF_NARROW_BLOCKS
 * below). One width for all was wrong: in an AVX2 build GCC keeps 64-byte vector
 * variables (no register holds one) in memory, so every multiply-add went through the
 * stack: 0.8-0.9 GFLOP/s on an AVX2-only Zen 3, 100x below its peak (and 32-byte ones on
 * SSE2, 3.8 GFLOP/s). The panels are the same on every path, so weights packed on one path
 * serve on another, and so are the sums (each value of C gathers its terms in the same
 * order); only the register blocking differs. */

/* GCC vector types of 64 and 32 bytes; _u: unaligned. */
typedef REAL SFX(rf_v64) __attribute__((vector_size(64)));
typedef REAL SFX(rf_v64_u) __attribute__((vector_size(64), aligned(sizeof(REAL))));
typedef REAL SFX(rf_v32) __attribute__((vector_size(32)));
typedef REAL SFX(rf_v32_u) __attribute__((vector_size(32), aligned(sizeof(REAL))));

/* dst(cols, rows) = src(rows, cols).T, each C-ordered with leading dimensions lds, ldd
 * (rnnfast.torch's weights: torch keeps weight_ih as (G, D), the kernels read Wx = (D, G)).
 * Square blocks of one vector a side (32 bytes: 8 floats, 4 doubles; SSE2's 16) go through
 * registers (rows loaded as vectors, interleaved by shuffles, stored as rows: ~0.7
 * instructions a value where a scalar copy takes ~5, as NumPy's strided `a.T.copy()`
 * does), in tiles of RF_TT x RF_TT values so that both sides stay in cache (NumPy's copy
 * walks the whole destination column by column: 4x slower from 1024 x 512 floats on, on a
 * Zen 3); the edges value by value. */
#if defined(__AVX__)
#define RF_TB 32                /* the block's vectors: 32 bytes, or SSE2's 16 */
#else
#define RF_TB 16
#endif
#define RF_TV (RF_TB / RF_REAL_BYTES)   /* values a vector: the block's side */
typedef REAL SFX(rf_tvec) __attribute__((vector_size(RF_TB)));
typedef REAL SFX(rf_tvec_u) __attribute__((vector_size(RF_TB), aligned(sizeof(REAL))));
#if RF_REAL_BYTES == 4
typedef int SFX(rf_tmask) __attribute__((vector_size(RF_TB)));
#else
typedef long long SFX(rf_tmask) __attribute__((vector_size(RF_TB)));
#endif
static inline __attribute__((always_inline)) void SFX(rf_transpose_block)(
        const REAL* restrict s, ptrdiff_t lds, REAL* restrict d, ptrdiff_t ldd) {
    typedef SFX(rf_tvec) V;
    typedef SFX(rf_tvec_u) VU;
    typedef SFX(rf_tmask) M;
    V r[RF_TV];
    _Pragma("GCC unroll 8")
    for (int i = 0; i < RF_TV; i++) r[i] = *(const VU*)(s + (ptrdiff_t)i * lds);
#if RF_TV == 8
    V t[8], u[8];
    _Pragma("GCC unroll 4")
    for (int i = 0; i < 8; i += 2) {            /* rows i, i+1 interleaved by pairs */
        t[i] = __builtin_shuffle(r[i], r[i + 1], (M){0, 8, 1, 9, 4, 12, 5, 13});
        t[i + 1] = __builtin_shuffle(r[i], r[i + 1], (M){2, 10, 3, 11, 6, 14, 7, 15});
    }
    _Pragma("GCC unroll 2")
    for (int i = 0; i < 8; i += 4) {            /* four rows' values of 2 columns per half */
        u[i] = __builtin_shuffle(t[i], t[i + 2], (M){0, 1, 8, 9, 4, 5, 12, 13});
        u[i + 1] = __builtin_shuffle(t[i], t[i + 2], (M){2, 3, 10, 11, 6, 7, 14, 15});
        u[i + 2] = __builtin_shuffle(t[i + 1], t[i + 3], (M){0, 1, 8, 9, 4, 5, 12, 13});
        u[i + 3] = __builtin_shuffle(t[i + 1], t[i + 3], (M){2, 3, 10, 11, 6, 7, 14, 15});
    }
    _Pragma("GCC unroll 4")
    for (int j = 0; j < 4; j++) {               /* columns j and j + 4: the halves joined */
        *(VU*)(d + (ptrdiff_t)j * ldd) = __builtin_shuffle(u[j], u[j + 4],
                                                           (M){0, 1, 2, 3, 8, 9, 10, 11});
        *(VU*)(d + (ptrdiff_t)(j + 4) * ldd) = __builtin_shuffle(
            u[j], u[j + 4], (M){4, 5, 6, 7, 12, 13, 14, 15});
    }
#elif RF_TV == 4
    const V t0 = __builtin_shuffle(r[0], r[1], (M){0, 4, 2, 6});
    const V t1 = __builtin_shuffle(r[0], r[1], (M){1, 5, 3, 7});
    const V t2 = __builtin_shuffle(r[2], r[3], (M){0, 4, 2, 6});
    const V t3 = __builtin_shuffle(r[2], r[3], (M){1, 5, 3, 7});
    *(VU*)d = __builtin_shuffle(t0, t2, (M){0, 1, 4, 5});
    *(VU*)(d + ldd) = __builtin_shuffle(t1, t3, (M){0, 1, 4, 5});
    *(VU*)(d + 2 * ldd) = __builtin_shuffle(t0, t2, (M){2, 3, 6, 7});
    *(VU*)(d + 3 * ldd) = __builtin_shuffle(t1, t3, (M){2, 3, 6, 7});
#else                                           /* 2 x 2 (SSE2's doubles) */
    *(VU*)d = __builtin_shuffle(r[0], r[1], (M){0, 2});
    *(VU*)(d + ldd) = __builtin_shuffle(r[0], r[1], (M){1, 3});
#endif
}
#define RF_TT 32
static void SFX(rf_transpose)(int rows, int cols, const REAL* restrict src, ptrdiff_t lds,
                              REAL* restrict dst, ptrdiff_t ldd) {
    for (int i0 = 0; i0 < rows; i0 += RF_TT) {
        const int i1 = rows - i0 < RF_TT ? rows : i0 + RF_TT;
        for (int j0 = 0; j0 < cols; j0 += RF_TT) {
            const int j1 = cols - j0 < RF_TT ? cols : j0 + RF_TT;
            for (int i = i0; i < i1; i += RF_TV) {
                for (int j = j0; j < j1; j += RF_TV) {
                    const REAL* restrict s = src + (ptrdiff_t)i * lds + j;
                    REAL* restrict d = dst + (ptrdiff_t)j * ldd + i;
                    if (i + RF_TV <= i1 && j + RF_TV <= j1) {
                        SFX(rf_transpose_block)(s, lds, d, ldd);
                        continue;
                    }
                    const int ni = i1 - i < RF_TV ? i1 - i : RF_TV;    /* an edge block */
                    const int nj = j1 - j < RF_TV ? j1 - j : RF_TV;
                    for (int jj = 0; jj < nj; jj++)
                        for (int ii = 0; ii < ni; ii++)
                            d[(ptrdiff_t)jj * ldd + ii] = s[(ptrdiff_t)ii * lds + jj];
                }
            }
        }
    }
}
#undef RF_TT
/* Where panel q of the k block starting at row p0 (kc rows) begins in the packed W. */
static inline ptrdiff_t SFX(rf_panel_offset)(int n, int p0, int q, int kc) {
    const ptrdiff_t panels = (n + RF_NR - 1) / RF_NR;
    return ((ptrdiff_t)p0 * panels + (ptrdiff_t)q * kc) * RF_NR;
}

static void SFX(rf_pack_panels)(int k, int n, const REAL* restrict w, int ldw, int transposed,
                      REAL* restrict wp) {
    /* W(k, n) is w[p * ldw + j], or w[j * ldw + p] when transposed. Stored in the order
     * rf_packed_gemm reads it: k block by k block (RF_KC rows), panel by panel within a
     * block, so that a product streams the packed weights front to back. */
    const int panels = (n + RF_NR - 1) / RF_NR;
    for (int p0 = 0; p0 < k; p0 += RF_KC) {
        const int kc = k - p0 < RF_KC ? k - p0 : RF_KC;
        for (int q = 0; q < panels; q++) {
            REAL* restrict pan = wp + SFX(rf_panel_offset)(n, p0, q, kc);
            const int col0 = q * RF_NR;
            const int ncols = n - col0 < RF_NR ? n - col0 : RF_NR;
            if (ncols < RF_NR)                          /* zero padding of the last panel */
                for (int p = 0; p < kc; p++)
                    for (int j = ncols; j < RF_NR; j++) pan[(ptrdiff_t)p * RF_NR + j] = 0;
            if (transposed)         /* W's columns are w's rows: the panel is the transpose
                                     * of ncols rows of w (the scalar copy of every value was
                                     * ~45% of the packing in a digits epoch: the backward
                                     * packs Wh.T each call) */
                SFX(rf_transpose)(ncols, kc, w + (ptrdiff_t)col0 * ldw + p0, ldw, pan, RF_NR);
            else if (ncols == RF_NR) {                  /* whole rows of the panel: two vectors
                                                         * (the loop below became a memcpy call
                                                         * per 128 bytes: 3% of a small fwd+bwd) */
                for (int p = 0; p < kc; p++) {
                    const REAL* restrict src = w + (ptrdiff_t)(p0 + p) * ldw + col0;
                    SFX(rf_v64_u)* dst = (SFX(rf_v64_u)*)(pan + (ptrdiff_t)p * RF_NR);
                    dst[0] = *(const SFX(rf_v64_u)*)src;
                    dst[1] = *(const SFX(rf_v64_u)*)(src + RF_NR / 2);
                }
            } else {
                for (int p = 0; p < kc; p++) {
                    const REAL* restrict src = w + (ptrdiff_t)(p0 + p) * ldw + col0;
                    for (int j = 0; j < ncols; j++) pan[(ptrdiff_t)p * RF_NR + j] = src[j];
                }
            }
        }
    }
}

/* The micro-kernels, for vectors of W bytes (64 or 32): NV = RF_NR * sizeof(REAL) / W
 * vectors of VL values cover a panel row. Accumulators are arrays of vectors indexed with
 * constants after full unrolling, so that they live in registers. */

/* c[0:ncols] (+)= the NR values of acc[0:NV]: whole vectors for a full panel. */
#define RF_STORE_BLOCK_ROW(W, acc, ncols, accumulate, c)                                     \
    do {                                                                                     \
        enum { NV_ = RF_NR * (int)sizeof(REAL) / W, VL_ = W / (int)sizeof(REAL) };           \
        REAL* restrict c_ = (c);                                                             \
        if ((ncols) == RF_NR) {                                                              \
            _Pragma("GCC unroll 4")                                                          \
            for (int v = 0; v < NV_; v++) {                                                  \
                SFX(rf_v##W##_u)* cv = (SFX(rf_v##W##_u)*)(c_ + v * VL_);                    \
                if (accumulate) *cv += (acc)[v]; else *cv = (acc)[v];                        \
            }                                                                                \
        } else {                                                                             \
            REAL out_[RF_NR];                                                                \
            _Pragma("GCC unroll 4")                                                          \
            for (int v = 0; v < NV_; v++) *(SFX(rf_v##W##_u)*)(out_ + v * VL_) = (acc)[v];   \
            if (accumulate) { for (int j = 0; j < (ncols); j++) c_[j] += out_[j]; }          \
            else            { for (int j = 0; j < (ncols); j++) c_[j] = out_[j]; }           \
        }                                                                                    \
    } while (0)

/* One MR x NR block: acc = A[0:MR, :] @ panel, then C (+)= acc on the first ncols. */
#define RF_DEFINE_MICRO(MR, W)                                                                 \
static inline __attribute__((always_inline)) void SFX(rf_micro_##MR##_##W)(                  \
                                      int k, const REAL* restrict a, ptrdiff_t a_rs,           \
                                      ptrdiff_t a_ks,                                          \
                                      const REAL* restrict panel, int ncols, int accumulate,   \
                                      REAL* restrict c, int ldc, const REAL* prefetch,         \
                                      int prefetch_every) {  /* a power of two */              \
    enum { NV = RF_NR * (int)sizeof(REAL) / W, VL = W / (int)sizeof(REAL) };                   \
    SFX(rf_v##W) acc[MR][NV];                                                                  \
    _Pragma("GCC unroll 8")                                                                    \
    for (int m = 0; m < MR; m++) {                                                             \
        _Pragma("GCC unroll 4")                                                                \
        for (int v = 0; v < NV; v++) acc[m][v] = (SFX(rf_v##W)){0};                            \
    }                                                                                          \
    for (int p = 0; p < k; p++) {                                                              \
        SFX(rf_v##W) w[NV];                                                                    \
        _Pragma("GCC unroll 4")                                                                \
        for (int v = 0; v < NV; v++)                                                           \
            w[v] = *(const SFX(rf_v##W##_u)*)(panel + (ptrdiff_t)p * RF_NR + v * VL);          \
        if (prefetch && (p & (prefetch_every - 1)) == 0) {  /* next panel's row: 2 lines */ \
            __builtin_prefetch(prefetch, 0, 2);                                                \
            __builtin_prefetch(prefetch + RF_NR / 2, 0, 2);                                    \
            prefetch += RF_NR;                                                                 \
        }                                                                                      \
        _Pragma("GCC unroll 8")                                                                \
        for (int m = 0; m < MR; m++) {                                                         \
            const REAL am = a[m * a_rs + p * a_ks];                                            \
            _Pragma("GCC unroll 4")                                                            \
            for (int v = 0; v < NV; v++) acc[m][v] += am * w[v];                               \
        }                                                                                      \
    }                                                                                          \
    _Pragma("GCC unroll 8")                                                                    \
    for (int m = 0; m < MR; m++)                                                               \
        RF_STORE_BLOCK_ROW(W, acc[m], ncols, accumulate, c + (ptrdiff_t)m * ldc);              \
}
RF_DEFINE_MICRO(8, 64)      /* 8 x 2 accumulators: AVX-512's 32 registers hold them */
RF_DEFINE_MICRO(2, 64)
RF_DEFINE_MICRO(2, 32)      /* 2 x 4: AVX2's 16 */
#undef RF_DEFINE_MICRO

/* The narrow paths' blocks (AVX2, baseline): a panel is cut into parts of 2 vectors, and
 * a 6-row x 2-vector block of C is kept in registers while one part of the panel streams:
 * 12 accumulators, 2 registers of W and 1 broadcast, 15 of the 16 registers (OpenBLAS's
 * Haswell sgemm block), 2 loads of W and 6 broadcasts per 12 FMAs where the 2 x 4 block
 * above needs 4 loads and 2 broadcasts per 8. A part is half (AVX2: 64 bytes) or a quarter
 * (baseline: 16-byte vectors, which SSE2's registers hold; 32-byte ones spilled) of each
 * 128-byte row of the panel, so a block reads half or a quarter of the panel block's
 * lines. Measured on a Zen 3 (1 thread, in one process beside the 2 x 4 block): AVX2
 * 1.2-1.8x the per-step products (16 x 64 x 256 to 64 x 1024 x 4096, float32), baseline
 * 7-8x. Blocks of 4, 2 and 1 rows take the rows left; all but the single row (as before,
 * rf_micro_1_32) sum each value of C over k in order in one accumulator, as the blocks
 * above do. Not compiled into the AVX-512 region, whose code stays as it was (it runs
 * only `wide`): RF_NARROW_BLOCKS is 0 there. */
#if defined(__AVX512F__)
#define RF_NARROW_BLOCKS 0
#else
#define RF_NARROW_BLOCKS 1
#if defined(__AVX__)
#define RF_NW 32            /* the narrow vector: 32 bytes (AVX2) */
#else
#define RF_NW 16            /* SSE2's 16-byte registers: 32-byte vectors would spill */
#endif
typedef REAL SFX(rf_v16) __attribute__((vector_size(16)));
typedef REAL SFX(rf_v16_u) __attribute__((vector_size(16), aligned(sizeof(REAL))));

/* c[0:ncols] (+)= the NV * VL values of acc[0:NV] (ncols <= NV * VL). */
#define RF_STORE_PART_ROW(W, NV, acc, ncols, accumulate, c)                                  \
    do {                                                                                     \
        enum { VL_ = W / (int)sizeof(REAL) };                                                \
        REAL* restrict c_ = (c);                                                             \
        if ((ncols) == NV * VL_) {                                                           \
            _Pragma("GCC unroll 8")                                                          \
            for (int v = 0; v < NV; v++) {                                                   \
                SFX(rf_v##W##_u)* cv = (SFX(rf_v##W##_u)*)(c_ + v * VL_);                    \
                if (accumulate) *cv += (acc)[v]; else *cv = (acc)[v];                        \
            }                                                                                \
        } else {                                                                             \
            REAL out_[NV * VL_];                                                             \
            _Pragma("GCC unroll 8")                                                          \
            for (int v = 0; v < NV; v++) *(SFX(rf_v##W##_u)*)(out_ + v * VL_) = (acc)[v];    \
            if (accumulate) { for (int j = 0; j < (ncols); j++) c_[j] += out_[j]; }          \
            else            { for (int j = 0; j < (ncols); j++) c_[j] = out_[j]; }           \
        }                                                                                    \
    } while (0)

/* One step p of k of the block below: acc[m][v] += A(m, p) * (the v-th vector of the part's
 * row p). */
#define RF_PART_STEP(MR, NV, W, p)                                                             \
    do {                                                                                       \
        SFX(rf_v##W) w_[NV];                                                                   \
        _Pragma("GCC unroll 8")                                                                \
        for (int v = 0; v < NV; v++)                                                           \
            w_[v] = *(const SFX(rf_v##W##_u)*)(part + (ptrdiff_t)(p) * RF_NR + v * VL);        \
        _Pragma("GCC unroll 8")                                                                \
        for (int m = 0; m < MR; m++) {                                                         \
            const REAL am = a[m * a_rs + (p) * a_ks];                                          \
            _Pragma("GCC unroll 8")                                                            \
            for (int v = 0; v < NV; v++) acc[m][v] += am * w_[v];                              \
        }                                                                                      \
    } while (0)

/* One MR x (NV vectors of W bytes) block: acc = A[0:MR, :] @ the part of the panel at
 * `part` (rows RF_NR values apart), then C (+)= acc on the first ncols of its columns.
 * No test in the loop over k: with the prefetch's (as in RF_DEFINE_MICRO) the 6 x 2 loop
 * was 28 instructions per 12 FMAs, and ran 0.75-1.0x as fast by where it landed in the
 * binary (the same code linked at four offsets); so the prefetch goes in its own loop, 8
 * steps of k then 8 / prefetch_every rows of the next panel, and the plain loop is
 * unrolled twice (1.0-1.3x the old loop at every offset). */
#define RF_DEFINE_MICRO_PART(MR, NV, W)                                                        \
static inline __attribute__((always_inline)) void SFX(rf_narrow_##MR##x##NV)(                \
        int k, const REAL* restrict a, ptrdiff_t a_rs, ptrdiff_t a_ks,                         \
        const REAL* restrict part, int ncols, int accumulate, REAL* restrict c, int ldc,      \
        const REAL* prefetch, int prefetch_every) {  /* a power of two, at most 8 */           \
    enum { VL = W / (int)sizeof(REAL) };                                                       \
    SFX(rf_v##W) acc[MR][NV];                                                                  \
    _Pragma("GCC unroll 8")                                                                    \
    for (int m = 0; m < MR; m++) {                                                             \
        _Pragma("GCC unroll 8")                                                                \
        for (int v = 0; v < NV; v++) acc[m][v] = (SFX(rf_v##W)){0};                            \
    }                                                                                          \
    int p = 0;                                                                                 \
    if (prefetch) {                                                                            \
        for (; p + 8 <= k; p += 8) {                                                           \
            _Pragma("GCC unroll 8")                                                            \
            for (int u = 0; u < 8; u++) RF_PART_STEP(MR, NV, W, p + u);                        \
            for (int r = 0; r < 8; r += prefetch_every) {  /* a row of the panel: 2 lines */   \
                __builtin_prefetch(prefetch, 0, 2);                                            \
                __builtin_prefetch(prefetch + RF_NR / 2, 0, 2);                                \
                prefetch += RF_NR;                                                             \
            }                                                                                  \
        }                                                                                      \
    }                                                                                          \
    _Pragma("GCC unroll 2")                                                                    \
    for (; p < k; p++) RF_PART_STEP(MR, NV, W, p);                                             \
    _Pragma("GCC unroll 8")                                                                    \
    for (int m = 0; m < MR; m++)                                                               \
        RF_STORE_PART_ROW(W, NV, acc[m], ncols, accumulate, c + (ptrdiff_t)m * ldc);           \
}
#define RF_DEFINE_MICRO_PART_(MR, NV, W) RF_DEFINE_MICRO_PART(MR, NV, W)
RF_DEFINE_MICRO_PART_(6, 2, RF_NW)   /* rf_narrow_6x2: 12 accumulators */
RF_DEFINE_MICRO_PART_(4, 2, RF_NW)   /* 8 */
RF_DEFINE_MICRO_PART_(6, 1, RF_NW)   /* a part's first vector only (the last columns of W: */
RF_DEFINE_MICRO_PART_(4, 1, RF_NW)   /* dx = dG @ Wx.T at 8 inputs), not the 6 x 2's half */
RF_DEFINE_MICRO_PART_(2, 4, RF_NW)   /* 8: AVX2's a whole panel, SSE2's half */
#if RF_NW == 16
RF_DEFINE_MICRO_PART_(1, 8, RF_NW)   /* 8: a whole panel (AVX2's row: rf_micro_1_32 below) */
#endif
#undef RF_DEFINE_MICRO_PART_
#undef RF_DEFINE_MICRO_PART
#undef RF_PART_STEP
#endif

/* One row (batch 1, the smallest problems): one accumulator per vector would wait on the
 * FMA latency at every step of k, so U steps of k go to U separate sets (U * NV = 8
 * accumulators), summed at the end. */
#define RF_DEFINE_MICRO_1(W, U)                                                                \
static inline __attribute__((always_inline)) void SFX(rf_micro_1_##W)(                       \
        int k, const REAL* restrict a, ptrdiff_t a_rs, ptrdiff_t a_ks,                         \
        const REAL* restrict panel, int ncols, int accumulate, REAL* restrict c, int ldc) {   \
    (void)a_rs; (void)ldc;                                                                     \
    enum { NV = RF_NR * (int)sizeof(REAL) / W, VL = W / (int)sizeof(REAL) };                   \
    SFX(rf_v##W) acc[U][NV];                                                                   \
    _Pragma("GCC unroll 4")                                                                    \
    for (int u = 0; u < U; u++) {                                                              \
        _Pragma("GCC unroll 4")                                                                \
        for (int v = 0; v < NV; v++) acc[u][v] = (SFX(rf_v##W)){0};                            \
    }                                                                                          \
    int p = 0;                                                                                 \
    for (; p + U <= k; p += U) {                                                               \
        _Pragma("GCC unroll 4")                                                                \
        for (int u = 0; u < U; u++) {                                                          \
            const REAL* restrict wk = panel + (ptrdiff_t)(p + u) * RF_NR;                      \
            const REAL ap = a[(p + u) * a_ks];                                                 \
            _Pragma("GCC unroll 4")                                                            \
            for (int v = 0; v < NV; v++)                                                       \
                acc[u][v] += ap * *(const SFX(rf_v##W##_u)*)(wk + v * VL);                     \
        }                                                                                      \
    }                                                                                          \
    for (; p < k; p++) {                                                                       \
        const REAL* restrict wk = panel + (ptrdiff_t)p * RF_NR;                                \
        const REAL ap = a[p * a_ks];                                                           \
        _Pragma("GCC unroll 4")                                                                \
        for (int v = 0; v < NV; v++) acc[0][v] += ap * *(const SFX(rf_v##W##_u)*)(wk + v * VL); \
    }                                                                                          \
    SFX(rf_v##W) sum[NV];                                                                      \
    _Pragma("GCC unroll 4")                                                                    \
    for (int v = 0; v < NV; v++)                                                               \
        sum[v] = U == 4 ? (acc[0][v] + acc[1 % U][v]) + (acc[2 % U][v] + acc[3 % U][v])      \
                        : acc[0][v] + acc[1 % U][v];                                           \
    RF_STORE_BLOCK_ROW(W, sum, ncols, accumulate, c);                                          \
}
RF_DEFINE_MICRO_1(64, 4)
RF_DEFINE_MICRO_1(32, 2)
#undef RF_DEFINE_MICRO_1

/* One row, P panels at once (a batch-1 LSTM's step product: G = 4 * 32): each a[p] feeds
 * P * NV FMAs, with one broadcast per P * NV loads of W where rf_micro_1 needs one per NV
 * (P * NV = 8 accumulators). The panels are panel_stride values apart; n_left: C's
 * columns from the first panel's on. */
#define RF_DEFINE_MICRO_1XP(W, P)                                                              \
static inline __attribute__((always_inline)) void SFX(rf_micro_1x##P##_##W)(                 \
        int k, const REAL* restrict a, ptrdiff_t a_ks, const REAL* restrict panel,            \
        ptrdiff_t panel_stride, int n_left, int accumulate, REAL* restrict c) {               \
    enum { NV = RF_NR * (int)sizeof(REAL) / W, VL = W / (int)sizeof(REAL) };                   \
    SFX(rf_v##W) acc[P][NV];                                                                   \
    _Pragma("GCC unroll 4")                                                                    \
    for (int u = 0; u < P; u++) {                                                              \
        _Pragma("GCC unroll 4")                                                                \
        for (int v = 0; v < NV; v++) acc[u][v] = (SFX(rf_v##W)){0};                            \
    }                                                                                          \
    for (int p = 0; p < k; p++) {                                                              \
        const REAL ap = a[p * a_ks];                                                           \
        _Pragma("GCC unroll 4")                                                                \
        for (int u = 0; u < P; u++) {                                                          \
            const REAL* restrict wk = panel + u * panel_stride + (ptrdiff_t)p * RF_NR;         \
            _Pragma("GCC unroll 4")                                                            \
            for (int v = 0; v < NV; v++)                                                       \
                acc[u][v] += ap * *(const SFX(rf_v##W##_u)*)(wk + v * VL);                     \
        }                                                                                      \
    }                                                                                          \
    _Pragma("GCC unroll 4")                                                                    \
    for (int u = 0; u < P; u++) {                                                              \
        const int ncols = n_left - u * RF_NR < RF_NR ? n_left - u * RF_NR : RF_NR;             \
        RF_STORE_BLOCK_ROW(W, acc[u], ncols, accumulate, c + u * RF_NR);                       \
    }                                                                                          \
}
RF_DEFINE_MICRO_1XP(64, 4)
RF_DEFINE_MICRO_1XP(32, 2)
#if RF_NARROW_BLOCKS && RF_NW == 16
RF_DEFINE_MICRO_1XP(16, 1)  /* 8 accumulators of 16 bytes: SSE2's registers */
#endif
#undef RF_DEFINE_MICRO_1XP

/* Four panels of one row: one pass of rf_micro_1x4_64, or two of rf_micro_1x2_32 (each
 * value of C sums its terms alike either way). */
static inline __attribute__((always_inline)) void SFX(rf_micro_1x4)(
        int wide, int k, const REAL* restrict a, ptrdiff_t a_ks, const REAL* restrict panel,
        ptrdiff_t panel_stride, int n_left, int accumulate, REAL* restrict c) {
    if (wide) {
        SFX(rf_micro_1x4_64)(k, a, a_ks, panel, panel_stride, n_left, accumulate, c);
    } else {
#if RF_NARROW_BLOCKS && RF_NW == 16
        for (int u = 0; u < 4; u++)
            SFX(rf_micro_1x1_16)(k, a, a_ks, panel + u * panel_stride, panel_stride,
                                 n_left - u * RF_NR, accumulate, c + u * RF_NR);
#else
        SFX(rf_micro_1x2_32)(k, a, a_ks, panel, panel_stride, n_left, accumulate, c);
        SFX(rf_micro_1x2_32)(k, a, a_ks, panel + 2 * panel_stride, panel_stride,
                             n_left - 2 * RF_NR, accumulate, c + 2 * RF_NR);
#endif
    }
}

/* Row block j's share of the next panel's prefetch (rows j * rows_each on), or NULL when
 * there is no next panel or the earlier blocks already cover its kc rows. */
static inline const REAL* SFX(rf_prefetch_share)(const REAL* next, int j, int rows_each,
                                                  int kc) {
    const int first_row = j * rows_each;
    return next && first_row < kc ? next + (ptrdiff_t)first_row * RF_NR : NULL;
}

#if RF_NARROW_BLOCKS
/* The narrow paths' share of rf_packed_panel: C[:, the panel's ncols columns at c] (+)=
 * A chunk @ panel block pan. Part by part (2 vectors of the panel's rows), 6-row blocks
 * then a 4-row block (of 1 vector when the part's columns fit in one: half the FMAs; the
 * digits LSTM's dx, 256 x 256 x 8, ran 1.4-1.8x faster); the rows left (at most 3) over
 * the whole panel: 2-row blocks, one row. The 6-row blocks read A interleaved (a_packed,
 * 6 rows' values side by side) when `interleaved`. The next panel's prefetch (next, see
 * rf_packed_panel) is shared among the 6-row blocks of all parts, or the 4-row ones when
 * there are none, or the 2-row ones. */
static inline __attribute__((always_inline)) void SFX(rf_narrow_panel)(
        int ncols, int kc, int mc, int acc, int interleaved, const REAL* next,
        const REAL* restrict ac, ptrdiff_t rs, ptrdiff_t ks, const REAL* restrict a_packed,
        const REAL* restrict pan, REAL* restrict c, int ldc) {
    enum { PC = 2 * RF_NW / (int)sizeof(REAL), PARTS = RF_NR / PC };  /* part columns */
    const int m6 = mc - mc % 6, m4 = mc - m6 >= 4 ? m6 + 4 : m6;
    const int nb = m6 > 0 ? m6 / 6 * PARTS : m4 > m6 ? PARTS : (mc - m4) / 2;
    int every = 1;
    while (every * 2 <= nb && every < 8) every *= 2;
    const int rows_each = (kc + every - 1) / every;
    for (int part = 0; part < PARTS && part * PC < ncols; part++) {
        const REAL* restrict pp = pan + part * PC;
        REAL* restrict cp = c + part * PC;
        const int pcols = ncols - part * PC < PC ? ncols - part * PC : PC;
        const int half = pcols <= PC / 2;       /* a part of one vector: 6 x 1, 4 x 1 */
        for (int i = 0; i < m6; i += 6) {
            const REAL* share = SFX(rf_prefetch_share)(next, part * (m6 / 6) + i / 6,
                                                       rows_each, kc);
            const REAL* restrict ai = interleaved ? a_packed + (ptrdiff_t)i * kc : ac + i * rs;
            const ptrdiff_t ai_rs = interleaved ? 1 : rs, ai_ks = interleaved ? 6 : ks;
            if (half)
                SFX(rf_narrow_6x1)(kc, ai, ai_rs, ai_ks, pp, pcols, acc,
                                   cp + (ptrdiff_t)i * ldc, ldc, share, every);
            else
                SFX(rf_narrow_6x2)(kc, ai, ai_rs, ai_ks, pp, pcols, acc,
                                   cp + (ptrdiff_t)i * ldc, ldc, share, every);
        }
        if (m4 > m6) {
            const REAL* share = m6 == 0 ? SFX(rf_prefetch_share)(next, part, rows_each, kc)
                                        : NULL;
            if (half)
                SFX(rf_narrow_4x1)(kc, ac + m6 * rs, rs, ks, pp, pcols, acc,
                                   cp + (ptrdiff_t)m6 * ldc, ldc, share, every);
            else
                SFX(rf_narrow_4x2)(kc, ac + m6 * rs, rs, ks, pp, pcols, acc,
                                   cp + (ptrdiff_t)m6 * ldc, ldc, share, every);
        }
    }
    int i = m4;
    enum { PC2 = 4 * RF_NW / (int)sizeof(REAL) };      /* the 2-row blocks' part columns */
    for (; i + 2 <= mc; i += 2) {
        for (int part = 0; part * PC2 < RF_NR && part * PC2 < ncols; part++)
            SFX(rf_narrow_2x4)(kc, ac + i * rs, rs, ks, pan + part * PC2,
                               ncols - part * PC2 < PC2 ? ncols - part * PC2 : PC2, acc,
                               c + (ptrdiff_t)i * ldc + part * PC2, ldc,
                               m4 == 0 && part == 0
                                   ? SFX(rf_prefetch_share)(next, i / 2, rows_each, kc) : NULL,
                               every);
    }
    if (i < mc) {
#if RF_NW == 16
        SFX(rf_narrow_1x8)(kc, ac + i * rs, rs, ks, pan, ncols, acc, c + (ptrdiff_t)i * ldc,
                           ldc, NULL, 1);
#else
        SFX(rf_micro_1_32)(kc, ac + i * rs, rs, ks, pan, ncols, acc, c + (ptrdiff_t)i * ldc,
                           ldc);
#endif
    }
}
#endif

/* One panel q of rf_packed_gemm's current k block and row chunk: C[:, q-th NR columns]
 * (+)= A chunk @ panel block. */
static inline __attribute__((always_inline)) void SFX(rf_packed_panel)(
        int q, int panels, int n, int p0, int kc, int mc, int acc, int wide,
        int interleaved, int prefetch_next,
        const REAL* restrict ac, ptrdiff_t rs, ptrdiff_t ks, const REAL* restrict a_packed,
        const REAL* restrict wp, REAL* restrict cc, int ldc) {
    const REAL* restrict pan = wp + SFX(rf_panel_offset)(n, p0, q, kc);
    const int col = q * RF_NR;
    const int ncols = n - col < RF_NR ? n - col : RF_NR;
    /* Weights too big for L2 come from L3 at each step, so the row blocks fetch the next
     * panel block into cache while they work on this one. The work is shared: with nb
     * blocks, block j fetches its rows j * rows_each .. of the next panel, one row (two
     * lines) every `every` steps of k. (All of it from the first block, two lines per
     * step, ran the 64 x 1024 x 4096 product 8-17% slower: too many misses at once.)
     * The sharing blocks are the 8-row ones when there are any, else the 2-row ones. */
    const REAL* next = q + 1 < panels && prefetch_next ? pan + (ptrdiff_t)kc * RF_NR : NULL;
    const int block_rows = wide && mc >= 8 ? 8 : 2;
    const int nb = mc / block_rows;
    int every = 1;
    while (every * 2 <= nb && every < 8) every *= 2;
    const int rows_each = (kc + every - 1) / every;
#if RF_NARROW_BLOCKS
    if (!wide) {
        SFX(rf_narrow_panel)(ncols, kc, mc, acc, interleaved, next, ac, rs, ks, a_packed,
                             pan, cc + col, ldc);
        return;
    }
#endif
    int i = 0;
    if (wide) {  /* 8 x 2 accumulators fit AVX-512's 32 registers, not AVX2's 16 */
        for (; i + 8 <= mc; i += 8) {
            const REAL* share = SFX(rf_prefetch_share)(next, i / 8, rows_each, kc);
            if (interleaved)
                SFX(rf_micro_8_64)(kc, a_packed + (ptrdiff_t)i * kc, 1, 8, pan, ncols, acc,
                                cc + (ptrdiff_t)i * ldc + col, ldc, share, every);
            else
                SFX(rf_micro_8_64)(kc, ac + i * rs, rs, ks, pan, ncols, acc,
                                cc + (ptrdiff_t)i * ldc + col, ldc, share, every);
        }
    }
    for (; i + 2 <= mc; i += 2) { /* (after 8-row blocks: the remainder, not sharing) */
        const REAL* share = block_rows == 2 ? SFX(rf_prefetch_share)(next, i / 2, rows_each, kc)
                                            : NULL;
        if (wide)
            SFX(rf_micro_2_64)(kc, ac + i * rs, rs, ks, pan, ncols, acc,
                               cc + (ptrdiff_t)i * ldc + col, ldc, share, every);
        else
            SFX(rf_micro_2_32)(kc, ac + i * rs, rs, ks, pan, ncols, acc,
                               cc + (ptrdiff_t)i * ldc + col, ldc, share, every);
    }
    for (; i < mc; i++) {
        if (wide)
            SFX(rf_micro_1_64)(kc, ac + i * rs, rs, ks, pan, ncols, acc,
                               cc + (ptrdiff_t)i * ldc + col, ldc);
        else
            SFX(rf_micro_1_32)(kc, ac + i * rs, rs, ks, pan, ncols, acc,
                               cc + (ptrdiff_t)i * ldc + col, ldc);
    }
}

/* Panels q0 .. q1-1 (those below `panels`) of the current k block and row chunk: four at
 * once while they last when the chunk is a single row, else one by one. */
static inline __attribute__((always_inline)) void SFX(rf_packed_group)(
        int q0, int q1, int panels, int n, int p0, int kc, int mc, int acc, int wide,
        int interleaved, int prefetch_next,
        const REAL* restrict ac, ptrdiff_t rs, ptrdiff_t ks, const REAL* restrict a_packed,
        const REAL* restrict wp, REAL* restrict cc, int ldc) {
    int q = q0;
    q1 = q1 < panels ? q1 : panels;
    if (mc == 1)
        for (; q + 4 <= q1; q += 4)
            SFX(rf_micro_1x4)(wide, kc, ac, ks, wp + SFX(rf_panel_offset)(n, p0, q, kc),
                              (ptrdiff_t)kc * RF_NR, n - q * RF_NR, acc, cc + q * RF_NR);
    for (; q < q1; q++)
        SFX(rf_packed_panel)(q, panels, n, p0, kc, mc, acc, wide, interleaved, prefetch_next,
                             ac, rs, ks, a_packed, wp, cc, ldc);
}

#if RF_NARROW_BLOCKS
/* rf_packed_gemm's interleaving of A's 6-row blocks (the narrow paths'), with the block's
 * rows a constant: with them read at run time, GCC copied each step of k's 6 values with a
 * `rep movsq` (22% of a 64 x 1600 x 64 float64 weight gradient, seed 004's dWh). Transposed, a row
 * of a (a step of k of every block) at a time: a's lines in order. */
static inline __attribute__((always_inline)) void SFX(rf_interleave_6)(
        int mc, int kc, const REAL* restrict ac, ptrdiff_t rs, ptrdiff_t ks, int a_transposed,
        REAL* restrict a_packed) {
    const int m6 = mc - mc % 6;
    if (a_transposed) {     /* A's 6 rows are 6 neighbours in a: a's rows front to back */
        for (int p = 0; p < kc; p++) {
            const REAL* restrict src = ac + p * ks;
            for (int i = 0; i < m6; i += 6) {
                REAL* restrict dst = a_packed + (ptrdiff_t)i * kc + p * 6;
                _Pragma("GCC unroll 6")
                for (int r = 0; r < 6; r++) dst[r] = src[i + r];
            }
        }
    } else {
        for (int i = 0; i < m6; i += 6) {
            REAL* restrict dst = a_packed + (ptrdiff_t)i * kc;
            for (int r = 0; r < 6; r++)
                for (int p = 0; p < kc; p++) dst[p * 6 + r] = ac[(i + r) * rs + p];
        }
    }
}
#endif

/* C(m, n) (+)= A(m, k) @ W(k, n), W packed by rf_pack_panels; A may be given
 * transposed (the weight gradients x.T @ dG).
 *
 * Blocked as a GEMM: k in blocks of RF_KC terms, each summed into C (a sum of 10^4
 * terms in one register would lose accuracy, and a block of W panels stays in
 * cache); rows in chunks of RF_MC; within those, panel by panel, so a panel block
 * (RF_KC x RF_NR, in L1) is reused by every row block of the chunk, and panels are
 * shared out among threads for large products. Blocks of 8 rows of the A chunk are
 * interleaved into a_packed (room for RF_K_GROUP * RF_MC * RF_KC values) first: rows k
 * values apart would alias in L1 when k is a multiple of 1024 (4 KiB). */
static void SFX(rf_packed_gemm)(int m, int n, int k, const REAL* restrict a, int lda,
                                 int a_transposed, const REAL* restrict wp,
                                 int accumulate, REAL* restrict c, int ldc,
                                 REAL* restrict a_packed, int parallel) {
    /* A(i, p) = a[i * rs + p * ks]: a is (m, k) row-major, or (k, m) when transposed */
    const ptrdiff_t rs = a_transposed ? 1 : lda, ks = a_transposed ? lda : 1;
    const int panels = (n + RF_NR - 1) / RF_NR;
    /* 8-row blocks on the AVX-512 path. Read at run time, not a constant per path: folding
     * it changed the register allocation of the AVX2 single-row product (1.1-1.2x slower). */
    const int wide = rf_simd_path == RF_PATH_AVX512;
    const int threads = parallel && (long long)m * n * k >= RF_THREADS_MIN_WORK
                        ? rf_team_threads() : 1;
    if (m == 1 && k <= RF_KC && threads == 1) {   /* a batch-1 step: none of the blocking */
        for (int q = 0; q < panels; q += 4)
            SFX(rf_packed_group)(q, q + 4, panels, n, 0, k, 1, accumulate, wide, 0, 0, a, rs,
                                 ks, a_packed, wp, c, ldc);
        return;
    }
    const int prefetch_next = (long long)k * n * (ptrdiff_t)sizeof(REAL) > rf_w_in_cache;
    /* The 8-row blocks read A interleaved (a_packed) when it is given transposed (its rows
     * are then columns of a) or when its rows are a multiple of 4 KiB apart (they alias in
     * L1) and W streams or the L1 has few ways (rf_interleave_aliased); else straight from
     * a, saving a copy as large as A. */
    const int copy_aliased = (lda * sizeof(REAL)) % 4096 == 0
                             && (prefetch_next || rf_interleave_aliased);  /* (_simd.h) */
#if RF_NARROW_BLOCKS
    const int ib = wide ? 8 : 6;          /* rows interleaved: the 8- or 6-row blocks' */
    const int interleave = a_transposed || copy_aliased;
#else
    const int ib = 8;
    const int interleave = wide && (a_transposed || copy_aliased);
#endif
    /* Blocks of (RF_MC rows, RF_KC terms), k blocks in ascending order for every row chunk
     * (so either order below sums alike). When all of W fits in L2, row chunk by row chunk:
     * a chunk's C stays in cache through its k blocks (dG @ Wx.T over all steps: 3200 x
     * 1024 x 128, C swept once instead of k / RF_KC times). Else k blocks RF_K_GROUP at a
     * time, each read from L3 once for all row chunks: within a row chunk, panel by panel,
     * the group's blocks one after the other, so that a C tile is still in L1 when the next
     * block adds to it (fewer passes over C than block by block, the same sums in the same
     * order: 512 x 4096 x 3200 and the other long-k products of the backward). */
    const int k_blocks = (k + RF_KC - 1) / RF_KC, row_chunks = (m + RF_MC - 1) / RF_MC;
    const int rows_outer = !prefetch_next;
    const int k_group = rows_outer ? 1 : RF_K_GROUP;
    const int n_outer = rows_outer ? row_chunks : (k_blocks + k_group - 1) / k_group;
    const int n_inner = rows_outer ? k_blocks : row_chunks;
    for (int outer = 0; outer < n_outer; outer++)
    for (int inner = 0; inner < n_inner; inner++) {
        const int kb0 = rows_outer ? inner : outer * k_group;
        const int kb1 = kb0 + k_group < k_blocks ? kb0 + k_group : k_blocks;
        const int i0 = (rows_outer ? outer : inner) * RF_MC;
        const int mc = m - i0 < RF_MC ? m - i0 : RF_MC;
        REAL* restrict cc = c + (ptrdiff_t)i0 * ldc;
        if (interleave) {   /* each block's rows into its own mc x RF_KC of a_packed */
            for (int kb = kb0; kb < kb1; kb++) {
                const int p0 = kb * RF_KC;
                const int kc = k - p0 < RF_KC ? k - p0 : RF_KC;
                const REAL* restrict ac = a + i0 * rs + p0 * ks;    /* A(i0, p0) */
                REAL* restrict ap = a_packed + (ptrdiff_t)(kb - kb0) * mc * RF_KC;
#if RF_NARROW_BLOCKS
                if (ib == 6) {
                    SFX(rf_interleave_6)(mc, kc, ac, rs, ks, a_transposed, ap);
                    continue;
                }
#endif
                for (int i = 0; i + ib <= mc; i += ib) {
                    REAL* restrict dst = ap + (ptrdiff_t)i * kc;
                    if (a_transposed)       /* A's ib rows are ib neighbours in a */
                        for (int p = 0; p < kc; p++)
                            for (int r = 0; r < ib; r++) dst[p * ib + r] = ac[i + r + p * ks];
                    else
                        for (int r = 0; r < ib; r++)
                            for (int p = 0; p < kc; p++) dst[p * ib + r] = ac[(i + r) * rs + p];
                }
            }
        }
        /* Panels in groups, shared out among threads: a single row takes four panels at
         * a time (rf_micro_1x4), with any thread count, so that each panel's sums do not
         * depend on it. (No parallel region at all for one thread: even an inactive one
         * costs ~1 us, as much as a whole batch-1 step.) */
        const int group = mc == 1 ? 4 : 1;
        const int groups = (panels + group - 1) / group;
#define RF_GROUP_BLOCKS(g)                                                                     \
        for (int kb = kb0; kb < kb1; kb++) {                                                   \
            const int p0 = kb * RF_KC;                                                         \
            const int kc = k - p0 < RF_KC ? k - p0 : RF_KC;                                    \
            SFX(rf_packed_group)((g) * group, (g) * group + group, panels, n, p0, kc, mc,      \
                                 accumulate || p0 > 0, wide, interleave, prefetch_next,        \
                                 a + i0 * rs + p0 * ks, rs, ks,                                \
                                 a_packed + (ptrdiff_t)(kb - kb0) * mc * RF_KC, wp, cc,        \
                                 ldc);                                                         \
        }
        if (threads > 1) {     /* timed: a late thread sends the next steps solo */
            rf_team_timer timer;
            rf_team_start(&timer, threads);
            #pragma omp parallel num_threads(threads)
            {
                #pragma omp for schedule(static) nowait
                for (int g = 0; g < groups; g++)
                    RF_GROUP_BLOCKS(g)
                rf_team_done(&timer);
            }
            rf_team_end(&timer);
        } else {
            for (int g = 0; g < groups; g++)
                RF_GROUP_BLOCKS(g)
        }
#undef RF_GROUP_BLOCKS
    }
}

/* dst[j] += sum over rows r of src[r * ld + j]: the bias gradient. */
static void SFX(rf_add_column_sums)(ptrdiff_t rows, int n, const REAL* restrict src,
                                     ptrdiff_t ld, REAL* restrict dst) {
    for (ptrdiff_t r = 0; r < rows; r++) {
        const REAL* restrict row = src + r * ld;
        for (int j = 0; j < n; j++) dst[j] += row[j];
    }
}
#undef RF_TV
#undef RF_TB
#undef RF_STORE_BLOCK_ROW
#undef RF_STORE_PART_ROW
#undef RF_NARROW_BLOCKS
#undef RF_NW
