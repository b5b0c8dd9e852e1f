/* Body of _simd.h, included once per REAL (float, double); see there.
 * Names get the suffix SFX: rf_tanh_f / rf_tanh_d, and so on.
 *
 * Every row function works on one batch row of n = hidden values; the gate
 * rows hold 4n values in the order i, f, g, o. The expressions follow
 * rnnfast/reference.py term by term so both round alike. */

/* exp(x): x = n ln2 + r with |r| <= ln2/2, exp(r) by its Taylor polynomial
 * (float: degree 7, double: degree 13; both under one ulp on that range),
 * times 2^n built from bits. Clamped so that exp(-inf) is a normal tiny number
 * and exp(+large) is +inf; NaN stays NaN (the clamps compare false). */
static inline REAL SFX(rf_exp)(REAL x) {
    x = x < RF_EXP_LO ? RF_EXP_LO : x;
    x = x > RF_EXP_HI ? RF_EXP_HI : x;
    const REAL shifted = x * RF_LOG2E + RF_SHIFTER;   /* round(x / ln2) in the low bits */
    const REAL n = shifted - RF_SHIFTER;
    REAL r = x - n * RF_LN2_HI;                       /* Cody-Waite: exact for |n| < 2^10 */
    r = r - n * RF_LN2_LO;
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
    p = p * r + (REAL)1.0;
    p = p * r + (REAL)1.0;
    return p * SFX(rf_pow2_from_shifted)(shifted);
}

/* tanh(x): an odd Taylor polynomial below |x| = 1/8 (where 1 - 2/(e^2x + 1)
 * would cancel), else 1 - 2/(exp(2|x|) + 1) with the sign of x. Exactly +-1 once
 * exp overflows; both branches are computed and one selected, so no jumps. */
static inline REAL SFX(rf_tanh)(REAL x) {
    const REAL ax = x < 0 ? -x : x;
    const REAL big = 1 - 2 / (SFX(rf_exp)(2 * ax) + 1);
    const REAL x2 = x * x;
    REAL p = (REAL)(-929569.0 / 638512875.0);
    p = p * x2 + (REAL)(21844.0 / 6081075.0);
    p = p * x2 + (REAL)(-1382.0 / 155925.0);
    p = p * x2 + (REAL)(62.0 / 2835.0);
    p = p * x2 + (REAL)(-17.0 / 315.0);
    p = p * x2 + (REAL)(2.0 / 15.0);
    p = p * x2 + (REAL)(-1.0 / 3.0);
    const REAL small = x + x * x2 * p;
    const REAL signed_big = x < 0 ? -big : big;
    return ax < RF_TANH_SMALL ? small : signed_big;
}

/* sigmoid(x) = 1 / (1 + exp(-x)): exactly 0 and 1 in saturation, no cancellation. */
static inline REAL SFX(rf_sigmoid)(REAL x) {
    return 1 / (1 + SFX(rf_exp)(-x));
}

/* Vectorizable bulk versions, used by the unit tests of the approximations. */
RF_CLONES static void SFX(rf_tanh_array)(ptrdiff_t n, const REAL* restrict x, REAL* restrict y) {
    for (ptrdiff_t j = 0; j < n; j++) y[j] = SFX(rf_tanh)(x[j]);
}
RF_CLONES static void SFX(rf_sigmoid_array)(ptrdiff_t n, const REAL* restrict x,
                                             REAL* restrict y) {
    for (ptrdiff_t j = 0; j < n; j++) y[j] = SFX(rf_sigmoid)(x[j]);
}

/* RNN forward, one row: h = act(a + b), a = x_t Wx + h_{t-1} Wh from the GEMMs;
 * h goes to the state buffer (read by the next step) and to the user's output row. */
RF_CLONES static void SFX(rf_rnn_forward_row)(int n, int relu, const REAL* restrict a,
                                               const REAL* restrict b, REAL* restrict h,
                                               REAL* restrict h_out) {
    if (relu) {
        for (int j = 0; j < n; j++) {
            const REAL v = a[j] + b[j];
            h[j] = v < 0 ? 0 : v;                 /* NaN passes through, as np.maximum */
        }
    } else {
        for (int j = 0; j < n; j++) h[j] = SFX(rf_tanh)(a[j] + b[j]);
    }
    for (int j = 0; j < n; j++) h_out[j] = h[j];
}

/* RNN backward, one row: dpre = (dh_rec + dout) * act'(a), act' from h = act(a). */
RF_CLONES static void SFX(rf_rnn_backward_row)(int n, int relu, const REAL* restrict dout,
                                                const REAL* restrict dh_rec,
                                                const REAL* restrict h, REAL* restrict dpre) {
    if (relu) {
        for (int j = 0; j < n; j++) {
            const REAL dh = dh_rec[j] + dout[j];
            dpre[j] = dh * (h[j] > 0 ? (REAL)1 : (REAL)0);
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
 * after; h: the new hidden state, also copied to the user's output row h_out. */
RF_CLONES static void SFX(rf_lstm_forward_row)(int n, REAL* restrict gates, const REAL* restrict b,
                                                const REAL* restrict c_prev, REAL* restrict c,
                                                REAL* restrict h, REAL* restrict h_out) {
    REAL* restrict gi = gates;
    REAL* restrict gf = gates + n;
    REAL* restrict gg = gates + 2 * n;
    REAL* restrict go = gates + 3 * n;
    for (int j = 0; j < n; j++) {
        const REAL i = SFX(rf_sigmoid)(gi[j] + b[j]);
        const REAL f = SFX(rf_sigmoid)(gf[j] + b[n + j]);
        const REAL g = SFX(rf_tanh)(gg[j] + b[2 * n + j]);
        const REAL o = SFX(rf_sigmoid)(go[j] + b[3 * n + j]);
        const REAL c_new = f * c_prev[j] + i * g;
        const REAL h_new = o * SFX(rf_tanh)(c_new);
        c[j] = c_new;
        h[j] = h_new;
        h_out[j] = h_new;
        gi[j] = i;
        gf[j] = f;
        gg[j] = g;
        go[j] = o;
    }
}

/* LSTM backward, one row. gates: in the activated i, f, g, o of the forward,
 * out their pre-activation gradients. dc: in dL/dc_t carried from step t+1,
 * out dL/dc_{t-1}. dh = dh_rec + dout is dL/dh_t. */
RF_CLONES static void SFX(rf_lstm_backward_row)(int n, REAL* restrict gates,
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

/* C(m, n) = A(m, k) @ B(k, n) (+ C when accumulate), row-major with leading
 * dimensions: the per-step product of small problems, where BLAS's call and
 * packing overhead cost more than the arithmetic. The j loop vectorizes. */
RF_CLONES static void SFX(rf_small_gemm)(int m, int n, int k, const REAL* restrict a, int lda,
                                          const REAL* restrict b, int ldb, int accumulate,
                                          REAL* restrict c, int ldc) {
    for (int i = 0; i < m; i++) {
        REAL* restrict ci = c + (ptrdiff_t)i * ldc;
        const REAL* restrict ai = a + (ptrdiff_t)i * lda;
        if (!accumulate) {
            for (int j = 0; j < n; j++) ci[j] = 0;
        }
        for (int p = 0; p < k; p++) {
            const REAL aip = ai[p];
            const REAL* restrict bp = b + (ptrdiff_t)p * ldb;
            for (int j = 0; j < n; j++) ci[j] += aip * bp[j];
        }
    }
}

/* dst[j] += sum over rows r of src[r * ld + j]: the bias gradient. */
RF_CLONES static void SFX(rf_add_column_sums)(ptrdiff_t rows, int n, const REAL* restrict src,
                                               ptrdiff_t ld, REAL* restrict dst) {
    for (ptrdiff_t r = 0; r < rows; r++) {
        const REAL* restrict row = src + r * ld;
        for (int j = 0; j < n; j++) dst[j] += row[j];
    }
}
