/* Branch-free elementwise gate math of rnnfast, in C so that GCC vectorizes it.
 *
 * Why C and not Cython: the time-step loops spend their non-GEMM time here, and
 * libm's scalar tanhf/expf make a compiled loop slower than NumPy (DESIGN.md,
 * "Measured facts"). These helpers use a Cody-Waite exp with a polynomial and
 * bit-built 2^n, written with no branches and no calls, so that GCC emits SIMD
 * code; every kernel is compiled for AVX-512, AVX2+FMA and baseline x86-64 (no
 * -march=native) and runs the path selected at run time (rf_simd_use; _core picks
 * the best the CPU has unless RNNFAST_SIMD or set_simd_path forces another).
 *
 * _simd_paths.h compiles the body, _simd_impl.h, once per path for each REAL
 * (float: suffix _f, double: _d) and defines the entry points _core calls.
 */
#ifndef RNNFAST_ELEMENTWISE_H
#define RNNFAST_ELEMENTWISE_H

#include <stdint.h>
#include <stddef.h>
#include <string.h>

/* The SIMD paths, each a superset of the one before (RNNFAST_SIMD's values; _core's
 * SIMD_PATHS lists them in this order). */
enum { RF_PATH_BASELINE, RF_PATH_AVX2, RF_PATH_AVX512, RF_N_PATHS };

/* GCC on x86-64 Linux compiles the body for all three paths (#pragma GCC target in
 * _simd_paths.h); other compilers and systems, or RNNFAST_NO_CLONES, the baseline only. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && !defined(RNNFAST_NO_CLONES)
#define RF_MULTI_PATH 1
#else
#define RF_MULTI_PATH 0
#endif

/* The best path the CPU (and this build) can run: the x86-64 levels v4 and v3, as the
 * target_clones resolvers checked them. */
static inline int rf_simd_cpu_best(void) {
#if RF_MULTI_PATH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4")) return RF_PATH_AVX512;
    if (__builtin_cpu_supports("x86-64-v3")) return RF_PATH_AVX2;
#endif
    return RF_PATH_BASELINE;
}

/* The path the entry points dispatch to (and whose block sizes rf_packed_gemm takes).
 * Written only by rf_simd_use, never to a path the CPU lacks (so never an illegal
 * instruction), not while kernels run. */
static int rf_simd_path = RF_PATH_BASELINE;
static inline int rf_simd_use(int path) {
    const int best = rf_simd_cpu_best();
    rf_simd_path = path < 0 ? RF_PATH_BASELINE : path > best ? best : path;
    return rf_simd_path;
}
static inline int rf_simd_current(void) { return rf_simd_path; }

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
/* Flush denormals to zero (FTZ) and treat denormal inputs as zero (DAZ) while a
 * kernel runs: denormal arithmetic is many times slower and changes no result
 * beyond 1e-38 (float) / 1e-308 (double). Returns the caller's MXCSR to restore. */
static inline unsigned int rf_denormals_off(void) {
    unsigned int old = _mm_getcsr();
    _mm_setcsr(old | 0x8040u);   /* FTZ (bit 15) | DAZ (bit 6) */
    return old;
}
static inline void rf_denormals_restore(unsigned int old) { _mm_setcsr(old); }
#else
static inline unsigned int rf_denormals_off(void) { return 0u; }
static inline void rf_denormals_restore(unsigned int old) { (void)old; }
#endif

/* Whether a product with a zero operand may be skipped: n values all zero (+0 or -0), or
 * all finite (0 * inf and 0 * NaN are NaN, which the product would have made). Bit tests
 * on integers, an OR of the lanes: vectorized at -O3 with no float exceptions. */
#define RF_SCANS(SFX, REAL, UINT, EXPONENT)                                                 \
static inline int rf_all_zero_##SFX(ptrdiff_t n, const REAL* x) {                          \
    UINT seen = 0;                                                                          \
    for (ptrdiff_t i = 0; i < n; i++) {                                                     \
        UINT u;                                                                             \
        memcpy(&u, x + i, sizeof u);                                                        \
        seen |= u << 1;                                   /* all but the sign */            \
    }                                                                                       \
    return seen == 0;                                                                       \
}                                                                                           \
static inline int rf_all_finite_##SFX(ptrdiff_t n, const REAL* x) {                        \
    UINT bad = 0;                                                                           \
    for (ptrdiff_t i = 0; i < n; i++) {                                                     \
        UINT u;                                                                             \
        memcpy(&u, x + i, sizeof u);                                                        \
        bad |= (u & (EXPONENT)) == (EXPONENT);            /* all ones: inf or NaN */        \
    }                                                                                       \
    return bad == 0;                                                                        \
}
RF_SCANS(f, float, uint32_t, 0x7f800000u)
RF_SCANS(d, double, uint64_t, 0x7ff0000000000000ull)

/* AddressSanitizer builds (RNNFAST_SANITIZE=address): a call's internal buffers are carved
 * out of one scratch block (_core.carve), so the red zones between them are poisoned by
 * hand; otherwise an overrun of one buffer into the next would go unreported. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
static inline void rf_asan_poison(const void* p, size_t n) { ASAN_POISON_MEMORY_REGION(p, n); }
static inline void rf_asan_unpoison(const void* p, size_t n) { ASAN_UNPOISON_MEMORY_REGION(p, n); }
#else
static inline void rf_asan_poison(const void* p, size_t n) { (void)p; (void)n; }
static inline void rf_asan_unpoison(const void* p, size_t n) { (void)p; (void)n; }
#endif

/* Threads for the packed products: only products of at least RF_THREADS_MIN_WORK
 * multiply-adds (about 30 us on one core; a parallel region costs a few us) use more than
 * one, as many as the thread policy gives (_threads.h: OpenMP's count, which OMP_NUM_THREADS
 * and threadpoolctl set, unless the machine or the process is busy): below that, waking a
 * second thread risks more than it saves. */
#include "_threads.h"
#include <unistd.h>     /* sysconf: the L1's ways (rf_interleave_aliased_use) */
#ifndef RF_THREADS_MIN_WORK
#define RF_THREADS_MIN_WORK (1LL << 21)
#endif
/* Problems whose per-step product has at least this many multiply-adds ("large") run
 * their float64 products and their deferred backward products in BLAS (see _core). */
#define RF_PARALLEL_MIN_WORK (1LL << 24)

/* The packed product's blocks (see rf_packed_gemm): RF_KC terms of k, RF_MC rows; the
 * interleaved rows of A take RF_MC * RF_KC values of scratch. A row chunk's block of C
 * (RF_MC x n) is swept panel by panel, so it should stay in L2: 512 rows (2 MiB of C at
 * n = 1024 floats) made the medium LSTM 6-8% slower than 128 (256: same as 128). */
#ifndef RF_KC
#define RF_KC 256
#endif
#ifndef RF_MC
#define RF_MC 128
#endif
/* k blocks a product whose W streams from L3 runs together, panel by panel (see
 * rf_packed_gemm); its interleaved A then takes RF_K_GROUP times the scratch. */
#ifndef RF_K_GROUP
#define RF_K_GROUP 2
#endif
/* Packed weights larger than rf_w_in_cache bytes are fetched ahead panel by panel, and
 * their products run k blocks outermost (rf_packed_gemm); smaller ones are left to the
 * hardware prefetchers. 1 MiB, not half the L2: on a Zen 1 (512 KiB of L2) fetching
 * ahead made W of 512 KiB - 1 MiB 7-12% slower, was even at 2 MiB, and 4-7% faster from 4
 * MiB (BENCHMARKS.md, session 16).
 * Either setting sums alike (only the loop order and the prefetches change), so it is a
 * speed knob only (_core._set_w_in_cache; tests/test_simd.py runs both orders). */
#ifndef RF_W_IN_CACHE
#define RF_W_IN_CACHE (1 << 20)
#endif
static long long rf_w_in_cache = RF_W_IN_CACHE;
/* Sets the threshold (bytes; 0 or less: RF_W_IN_CACHE) and returns the one before. Not
 * while kernels run. */
static inline long long rf_w_in_cache_use(long long bytes) {
    const long long previous = rf_w_in_cache;
    rf_w_in_cache = bytes > 0 ? bytes : RF_W_IN_CACHE;
    return previous;
}

/* Whether the packed products copy A's rows into a_packed (interleaved) when those rows lie
 * a multiple of 4 KiB apart and W is held in cache (rows outermost), or read them in
 * place. Such rows fall into one L1 set: an 8-row block takes 8 of its ways, all of an
 * 8-way L1 (Zen 1-4), but leaves 4 of a 12-way one for W and C. On an Intel Xeon with a
 * 48 KiB 12-way L1, in place was 1.27x faster at 3200 x 1024 x 128 (the medium LSTM's
 * dx), 1.36x at 16 x 1024 x 64 and 1.08x at 32 x 1024 x 256, 1.04-1.06x for the medium
 * LSTM's forward+backward (AVX2 path alike; BENCHMARKS.md, session 17); copied stays the
 * rule for a W fetched ahead (k blocks outermost: in place 0.95-0.98x there), and for L1s
 * of fewer than 12 ways or of unknown associativity (in place not measured there). Either
 * reads the same values, so it changes no result (_core._set_interleave_aliased;
 * tests/test_simd.py runs both). */
#define RF_IN_PLACE_MIN_WAYS 12
static int rf_interleave_aliased = 1;
/* Sets it: 1 copy, 0 in place, -1 this machine's default (by the L1's ways); returns the
 * setting before. Not while kernels run. */
static inline int rf_interleave_aliased_use(int mode) {
    const int previous = rf_interleave_aliased;
    if (mode < 0) {
#ifdef _SC_LEVEL1_DCACHE_ASSOC
        const long ways = sysconf(_SC_LEVEL1_DCACHE_ASSOC);
#else
        const long ways = 0;
#endif
        mode = !(ways >= RF_IN_PLACE_MIN_WAYS);
    }
    rf_interleave_aliased = mode != 0;
    return previous;
}

/* 2^n for an integer-valued n, from the bits of t = n + 1.5 * 2^23 (float) or
 * n + 1.5 * 2^52 (double): n sits in the low mantissa bits of t, so adding the
 * exponent bias and shifting builds 2^n with integer SIMD only (no float->int
 * conversion, which SSE2/AVX2 lack for 64-bit lanes). */
static inline float rf_pow2_from_shifted_f(float t) {
    union { float f; uint32_t u; } in, out;
    in.f = t;
    out.u = (in.u + 127u) << 23;
    return out.f;
}
static inline double rf_pow2_from_shifted_d(double t) {
    union { double f; uint64_t u; } in, out;
    in.f = t;
    out.u = (in.u + 1023u) << 52;
    return out.f;
}

/* The RNN's activations (the cell kinds' codes in _core): tanh, relu, sigmoid. */
enum { RF_ACT_TANH = 0, RF_ACT_RELU = 1, RF_ACT_SIGMOID = 2 };

#define REAL float
#define RF_REAL_BYTES 4
#define RSFX(name) name##_f
#define RF_EXP_LO (-87.0f)      /* exp(lo) is still a normal float */
#define RF_EXP_HI (88.8f)       /* 2^128 is built as +inf: exp overflows cleanly */
#define RF_SHIFTER 12582912.0f  /* 1.5 * 2^23 */
#define RF_LN2_HI 0.693359375f
#define RF_LN2_LO (-2.12194440e-4f)
#define RF_LOG2E 1.44269504088896341f
#define RF_TANH_SATURATE 10.0f  /* tanh(10) rounds to 1 in float */
#define RF_EXP_DEGREE 7
#define RF_NR 32
#include "_simd_paths.h"   /* (undefines the parameters above) */

#define REAL double
#define RF_REAL_BYTES 8
#define RSFX(name) name##_d
#define RF_EXP_LO (-708.0)
#define RF_EXP_HI (709.9)
#define RF_SHIFTER 6755399441055744.0   /* 1.5 * 2^52 */
#define RF_LN2_HI 6.93147180369123816490e-01
#define RF_LN2_LO 1.90821492927058770002e-10
#define RF_LOG2E 1.44269504088896338700
#define RF_TANH_SATURATE 20.0   /* tanh(20) rounds to 1 in double */
#define RF_EXP_DEGREE 13
#define RF_NR 16
#include "_simd_paths.h"   /* (undefines the parameters above) */

#endif
