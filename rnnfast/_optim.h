/* The optimizers' updates (rnnfast.optim) in one pass over each parameter, float and double.
 *
 * The NumPy twin (optim.py) makes 7-14 passes over every parameter per step, each a ufunc
 * call of a few microseconds: Adam over a 19k-parameter model took ~60-130 us a step here,
 * ~13% of a digits epoch. These loops do the same operations in the same order, each
 * rounded to the parameter's dtype as NumPy rounds it (the scalars come in as the dtype's
 * values: NumPy casts a Python float to the array's dtype). No contraction of a*b+c into
 * one FMA (it rounds once where NumPy rounds twice): the results are NumPy's to the bit
 * (tests/test_optim.py). setup.py builds with -fno-math-errno: an errno test around sqrt
 * kept these loops scalar. Compiled once per SIMD path (_simd.h) and run on the selected
 * one, as the kernels are: every operation is IEEE-rounded (no FMA: fp-contract off), so
 * every path gives the same bits, and CI checks each (Adam over digits' 19k float32
 * parameters, a step: 14.9 us on SSE2, 7.7 on AVX2, 4.0 on AVX-512, Zen 5; with one
 * division a value fewer, 9.3, 8.4 and 8.8 us on an Intel Xeon, whose divisions and
 * square roots bound it). */
#ifndef RNNFAST_OPTIM_H
#define RNNFAST_OPTIM_H

#include <math.h>
#include <stddef.h>

#include "_simd.h"          /* rf_simd_path, RF_MULTI_PATH */

#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")

/* Each update is one loop per case (weight decay or not, momentum or not, Nesterov or
 * not), each without a branch inside: GCC vectorizes only branch-free loops. */
#define RF_DECAYED(p, g) ((p) * wd + (g))   /* NumPy: out = p * wd; out = out + g */

#define RF_ADAM_LOOP(REAL, SQRT, D)                                                         \
    for (ptrdiff_t i = 0; i < n; i++) {                                                     \
        const REAL d = D;                                                                   \
        const REAL mi = m[i] * b1 + d * one_b1;                                             \
        const REAL vi = v[i] * b2 + (d * d) * one_b2;                                       \
        m[i] = mi;                                                                          \
        v[i] = vi;                                                                          \
        p[i] = p[i] - (mi / (SQRT(vi) + eps)) * step_size;                                  \
    }

#define RF_ADAGRAD_LOOP(REAL, SQRT, D)                                                      \
    for (ptrdiff_t i = 0; i < n; i++) {                                                     \
        const REAL d = D;                                                                   \
        const REAL a = acc[i] + d * d;                                                      \
        acc[i] = a;                                                                         \
        p[i] = p[i] - (d / (SQRT(a) + eps)) * lr;                                           \
    }

#define RF_SGD_LOOP(REAL, D, UPDATE)                                                        \
    for (ptrdiff_t i = 0; i < n; i++) {                                                     \
        const REAL d = D;                                                                   \
        UPDATE                                                                              \
    }

#define RF_OPTIM_DEFINE(REAL, SQRT, SFX, TARGET)                                            \
/* Adam: d = g (+ wd * p); m = b1*m + (1-b1)*d; v = b2*v + (1-b2)*d*d;                      \
 * p = p - (m / (sqrt(v) + eps)) * step_size, the bias corrections in step_size and eps */  \
static TARGET void rf_adam_##SFX(ptrdiff_t n, REAL* restrict p, const REAL* restrict g,            \
                          REAL* restrict m, REAL* restrict v, REAL b1, REAL one_b1,          \
                          REAL b2, REAL one_b2, REAL step_size, REAL eps,                    \
                          REAL wd, int decay) {                                             \
    if (decay) { RF_ADAM_LOOP(REAL, SQRT, RF_DECAYED(p[i], g[i])) }                         \
    else { RF_ADAM_LOOP(REAL, SQRT, g[i]) }                                                 \
}                                                                                           \
/* AdaGrad: d = g (+ wd * p); G = G + d*d; p = p - (d / (sqrt(G) + eps)) * lr */              \
static TARGET void rf_adagrad_##SFX(ptrdiff_t n, REAL* restrict p, const REAL* restrict g,         \
                             REAL* restrict acc, REAL lr, REAL eps, REAL wd, int decay) {   \
    if (decay) { RF_ADAGRAD_LOOP(REAL, SQRT, RF_DECAYED(p[i], g[i])) }                      \
    else { RF_ADAGRAD_LOOP(REAL, SQRT, g[i]) }                                              \
}                                                                                           \
/* SGD: d = g (+ wd * p); with momentum buf = momentum*buf + d, then d = d + momentum*buf  \
 * (Nesterov) or buf; p = p - d * lr */                                                     \
static TARGET void rf_sgd_##SFX(ptrdiff_t n, REAL* restrict p, const REAL* restrict g,             \
                         REAL* restrict buf, REAL lr, REAL momentum, int nesterov, REAL wd, \
                         int decay) {                                                       \
    if (!buf) {                                                                             \
        if (decay) { RF_SGD_LOOP(REAL, RF_DECAYED(p[i], g[i]), p[i] = p[i] - d * lr;) }     \
        else { RF_SGD_LOOP(REAL, g[i], p[i] = p[i] - d * lr;) }                             \
    } else if (nesterov) {                                                                  \
        if (decay) { RF_SGD_LOOP(REAL, RF_DECAYED(p[i], g[i]),                              \
                                 const REAL b = buf[i] * momentum + d; buf[i] = b;          \
                                 p[i] = p[i] - (d + b * momentum) * lr;) }                  \
        else { RF_SGD_LOOP(REAL, g[i], const REAL b = buf[i] * momentum + d; buf[i] = b;    \
                           p[i] = p[i] - (d + b * momentum) * lr;) }                        \
    } else {                                                                                \
        if (decay) { RF_SGD_LOOP(REAL, RF_DECAYED(p[i], g[i]),                              \
                                 const REAL b = buf[i] * momentum + d; buf[i] = b;          \
                                 p[i] = p[i] - b * lr;) }                                   \
        else { RF_SGD_LOOP(REAL, g[i], const REAL b = buf[i] * momentum + d; buf[i] = b;    \
                           p[i] = p[i] - b * lr;) }                                         \
    }                                                                                       \
}

RF_OPTIM_DEFINE(float, __builtin_sqrtf, f_base, )
RF_OPTIM_DEFINE(double, __builtin_sqrt, d_base, )
#if RF_MULTI_PATH
#define RF_TARGET_V3 __attribute__((target("arch=x86-64-v3")))
#define RF_TARGET_V4 __attribute__((target("arch=x86-64-v4")))
RF_OPTIM_DEFINE(float, __builtin_sqrtf, f_v3, RF_TARGET_V3)
RF_OPTIM_DEFINE(double, __builtin_sqrt, d_v3, RF_TARGET_V3)
RF_OPTIM_DEFINE(float, __builtin_sqrtf, f_v4, RF_TARGET_V4)
RF_OPTIM_DEFINE(double, __builtin_sqrt, d_v4, RF_TARGET_V4)
/* The selected path's update (rf_simd_use never selects one the CPU lacks). */
#define RF_OPTIM_RUN(name, args)                                                            \
    if (rf_simd_path == RF_PATH_AVX512) name##_v4 args;                                     \
    else if (rf_simd_path == RF_PATH_AVX2) name##_v3 args;                                  \
    else name##_base args;
#else
#define RF_OPTIM_RUN(name, args) name##_base args;
#endif

#define RF_OPTIM_ENTRIES(REAL, SFX)                                                         \
static void rf_adam_##SFX(ptrdiff_t n, REAL* p, const REAL* g, REAL* m, REAL* v, REAL b1,  \
                          REAL one_b1, REAL b2, REAL one_b2, REAL step_size,               \
                          REAL eps, REAL wd, int decay) {                                  \
    RF_OPTIM_RUN(rf_adam_##SFX, (n, p, g, m, v, b1, one_b1, b2, one_b2, step_size,          \
                                 eps, wd, decay))                                          \
}                                                                                           \
static void rf_adagrad_##SFX(ptrdiff_t n, REAL* p, const REAL* g, REAL* acc, REAL lr,      \
                             REAL eps, REAL wd, int decay) {                               \
    RF_OPTIM_RUN(rf_adagrad_##SFX, (n, p, g, acc, lr, eps, wd, decay))                      \
}                                                                                           \
static void rf_sgd_##SFX(ptrdiff_t n, REAL* p, const REAL* g, REAL* buf, REAL lr,          \
                         REAL momentum, int nesterov, REAL wd, int decay) {                \
    RF_OPTIM_RUN(rf_sgd_##SFX, (n, p, g, buf, lr, momentum, nesterov, wd, decay))           \
}

RF_OPTIM_ENTRIES(float, f)
RF_OPTIM_ENTRIES(double, d)

#pragma GCC pop_options

#endif
