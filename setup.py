"""Build of the compiled core: one Cython extension, directives set once for the project.

RNNFAST_DEBUG=1 turns bounds checking (and -O0 -g) on; RNNFAST_SANITIZE=address builds with
AddressSanitizer. No flag for the build machine's own CPU: the C helpers are compiled once per
SIMD path and dispatch at run time (rnnfast/_simd_paths.h).
"""
import os

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

debug = os.environ.get("RNNFAST_DEBUG", "") not in ("", "0")
sanitize = os.environ.get("RNNFAST_SANITIZE", "")

directives = {
    "language_level": 3,
    "boundscheck": debug,
    "wraparound": False,
    "initializedcheck": debug,
    "cdivision": True,
    "embedsignature": True,
}
# -fno-trapping-math lets GCC vectorize the branch-free clamps (DESIGN.md, measured facts);
# -fno-math-errno the optimizers' sqrt (_optim.h: no errno test around it, which kept the
# loop scalar; the kernels call no libm function).
compile_args = (["-O0", "-g"] if debug else ["-O3", "-fno-trapping-math"]) + ["-fno-math-errno"]
link_args = []
# OpenMP splits the per-step product of large problems over the threads OpenMP is given
# (OMP_NUM_THREADS, threadpoolctl); RNNFAST_OPENMP=0 builds without it.
if os.environ.get("RNNFAST_OPENMP", "1") != "0":
    compile_args.append("-fopenmp")
    link_args.append("-fopenmp")
if sanitize:
    compile_args += [f"-fsanitize={sanitize}", "-fno-omit-frame-pointer", "-g"]
    link_args += [f"-fsanitize={sanitize}"]

extensions = [
    Extension(
        "rnnfast._core",
        ["rnnfast/_core.pyx"],
        include_dirs=[np.get_include(), "rnnfast"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )
]

# force: a debug build must not reuse C generated without bounds checks, and vice versa.
setup(ext_modules=cythonize(extensions, compiler_directives=directives, force=True))
