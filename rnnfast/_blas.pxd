# The one matrix-product layer of rnnfast: row-major GEMM over scipy's Fortran BLAS, and the
# per-step product that takes a plain C loop when a problem is too small for BLAS. Fused over
# float/double, callable without the GIL.
from cython cimport floating
from scipy.linalg.cython_blas cimport dgemm, sgemm


cdef extern from "_simd.h" nogil:
    void rf_small_gemm_f(int m, int n, int k, const float* a, int lda, const float* b, int ldb,
                         int accumulate, float* c, int ldc)
    void rf_small_gemm_d(int m, int n, int k, const double* a, int lda, const double* b,
                         int ldb, int accumulate, double* c, int ldc)


# m * n * k up to which a product runs in rf_small_gemm instead of BLAS: below it, the BLAS
# call and its packing of the weight matrix cost more than the multiply-adds.
cdef enum:
    SMALL_GEMM_MAX = 32768


cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int k,
                      floating alpha, const floating* a, int lda,
                      const floating* b, int ldb,
                      floating beta, floating* c, int ldc) noexcept nogil:
    """Row-major C(m, n) = alpha * op(A) @ op(B) + beta * C; lda, ldb, ldc are row lengths.

    BLAS is column-major and sees every row-major matrix transposed, so
    C^T = op(B)^T @ op(A)^T is the same call with the operands swapped: no copies.
    """
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    if m == 0 or n == 0:
        return
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float*> b, &ldb, <float*> a, &lda,
              &beta, c, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double*> b, &ldb, <double*> a, &lda,
              &beta, c, &ldc)


cdef inline bint is_small(int m, int n, int k) noexcept nogil:
    return <long long> m * n * k <= SMALL_GEMM_MAX


cdef inline void matmul(int m, int n, int k, const floating* a, int lda, const floating* b,
                        int ldb, bint accumulate, floating* c, int ldc) noexcept nogil:
    """Row-major C(m, n) = A @ B (+ C if accumulate): a C loop when small, else BLAS."""
    if is_small(m, n, k):
        if floating is float:
            rf_small_gemm_f(m, n, k, a, lda, b, ldb, accumulate, c, ldc)
        else:
            rf_small_gemm_d(m, n, k, a, lda, b, ldb, accumulate, c, ldc)
    else:
        gemm(False, False, m, n, k, <floating> 1, a, lda, b, ldb,
             <floating> (1 if accumulate else 0), c, ldc)
