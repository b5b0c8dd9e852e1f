/* The body (_simd_impl.h) once per SIMD path for one REAL, and the entry points _core
 * calls, which run the path rf_simd_use selected. Included once per REAL by _simd.h;
 * undefines that REAL's parameters at its end.
 *
 * A compiled copy per path rather than GCC's target_clones: the loader's ifunc picks a
 * clone by the CPU alone, so an AVX-512 machine could never run (or test) the others.
 * The whole body goes into each target region because GCC inlines the always_inline
 * helpers only into callers compiled for a superset of their target. */

#define RF_CAT_(a, b) a##b
#define RF_CAT(a, b) RF_CAT_(a, b)
#define SFX(name) RF_CAT(RSFX(name), RF_PATH_SFX)    /* rf_tanh_array_f_v4, ... */

#if RF_MULTI_PATH
#pragma GCC push_options
#pragma GCC target("arch=x86-64-v4")
#define RF_PATH_SFX _v4
#include "_simd_impl.h"
#undef RF_PATH_SFX
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("arch=x86-64-v3")
#define RF_PATH_SFX _v3
#include "_simd_impl.h"
#undef RF_PATH_SFX
#pragma GCC pop_options
#endif

#define RF_PATH_SFX _base   /* the command line's target: x86-64 (SSE2), or the machine's */
#include "_simd_impl.h"
#undef RF_PATH_SFX

#ifndef RF_KERNELS
/* The kernels of each path, X(name, parameters, arguments): a table entry and an entry
 * point each. (REAL is expanded where the list is used.) */
#define RF_KERNELS(X)                                                                      \
    X(exp_array, (ptrdiff_t n, const REAL* x, REAL* y), (n, x, y))                         \
    X(tanh_array, (ptrdiff_t n, const REAL* x, REAL* y), (n, x, y))                        \
    X(sigmoid_array, (ptrdiff_t n, const REAL* x, REAL* y), (n, x, y))                     \
    X(rnn_forward_row, (int n, int act, const REAL* a, const REAL* b, REAL* h,             \
                        REAL* h_out), (n, act, a, b, h, h_out))                            \
    X(rnn_backward_row, (int n, int act, const REAL* dout, const REAL* dh_rec,             \
                         const REAL* h, REAL* dpre), (n, act, dout, dh_rec, h, dpre))      \
    X(lstm_forward_row, (int n, REAL* gates, const REAL* b, const REAL* c_prev, REAL* c,   \
                         REAL* h, REAL* h_out), (n, gates, b, c_prev, c, h, h_out))        \
    X(lstm_backward_row, (int n, REAL* gates, const REAL* c, const REAL* c_prev,           \
                          const REAL* dout, const REAL* dh_rec, REAL* dc),                 \
      (n, gates, c, c_prev, dout, dh_rec, dc))                                             \
    X(gru_forward_row, (int n, REAL* gates, REAL* hgates, const REAL* b, const REAL* b_hn, \
                        const REAL* h_prev, REAL* h, REAL* h_out),                         \
      (n, gates, hgates, b, b_hn, h_prev, h, h_out))                                       \
    X(gru_backward_row, (int n, REAL* gates, REAL* hgates, const REAL* h_prev,             \
                         const REAL* dout, REAL* dh_rec), (n, gates, hgates, h_prev, dout, \
                                                           dh_rec))                        \
    X(pack_panels, (int k, int n, const REAL* w, int ldw, int transposed, REAL* wp),       \
      (k, n, w, ldw, transposed, wp))                                                      \
    X(packed_gemm, (int m, int n, int k, const REAL* a, int lda, int a_transposed,         \
                    const REAL* wp, int accumulate, REAL* c, int ldc, REAL* a_packed,      \
                    int parallel),                                                         \
      (m, n, k, a, lda, a_transposed, wp, accumulate, c, ldc, a_packed, parallel))         \
    X(add_column_sums, (ptrdiff_t rows, int n, const REAL* src, ptrdiff_t ld, REAL* dst),  \
      (rows, n, src, ld, dst))                                                             \
    X(transpose, (int rows, int cols, const REAL* src, ptrdiff_t lds, REAL* dst,           \
                  ptrdiff_t ldd), (rows, cols, src, lds, dst, ldd))
#define RF_KERNEL_FIELD(name, params, args) void (*name) params;
#define RF_KERNEL_OF_PATH(name, params, args) SFX(rf_##name),
#define RF_KERNEL_ENTRY(name, params, args)                                                \
    static inline void RSFX(rf_##name) params { RSFX(rf_kernels)[rf_simd_path].name args; }
#endif

/* Each path's kernels, by RF_PATH_* (a build with one path leaves the others empty:
 * rf_simd_use never selects them). */
typedef struct { RF_KERNELS(RF_KERNEL_FIELD) } RSFX(rf_kernel_table);
static const RSFX(rf_kernel_table) RSFX(rf_kernels)[RF_N_PATHS] = {
#define RF_PATH_SFX _base
    [RF_PATH_BASELINE] = { RF_KERNELS(RF_KERNEL_OF_PATH) },
#undef RF_PATH_SFX
#if RF_MULTI_PATH
#define RF_PATH_SFX _v3
    [RF_PATH_AVX2] = { RF_KERNELS(RF_KERNEL_OF_PATH) },
#undef RF_PATH_SFX
#define RF_PATH_SFX _v4
    [RF_PATH_AVX512] = { RF_KERNELS(RF_KERNEL_OF_PATH) },
#undef RF_PATH_SFX
#endif
};

/* rf_tanh_array_f(...) and so on: the selected path's kernel. */
RF_KERNELS(RF_KERNEL_ENTRY)

/* Values of a (k, n) weight packed by rf_pack_panels: n padded to whole panels (the same
 * layout on every path). */
static inline int RSFX(rf_packed_size)(int k, int n) {
    return k * ((n + RF_NR - 1) / RF_NR) * RF_NR;
}

#undef SFX
#undef RSFX
#undef REAL
#undef RF_REAL_BYTES
#undef RF_EXP_LO
#undef RF_EXP_HI
#undef RF_SHIFTER
#undef RF_LN2_HI
#undef RF_LN2_LO
#undef RF_LOG2E
#undef RF_TANH_SATURATE
#undef RF_EXP_DEGREE
#undef RF_NR
