# The BLAS layer of rnnfast: row-major GEMM over scipy's Fortran BLAS, fused over
# float/double, callable without the GIL.
from cython cimport floating
from scipy.linalg.cython_blas cimport dgemm, sgemm


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
