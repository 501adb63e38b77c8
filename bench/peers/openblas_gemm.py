"""OpenBLAS (through numpy) on the GEMMs of bench --kernels: 1024³ and each convolution of model M
as an im2col product, 1 and 2 threads, GFLOP/s (median of 7). The im2col itself is not counted.
Usage: bench/peers/.venv/bin/python bench/peers/openblas_gemm.py

OpenBLAS 0.3.31 does not recognise AMD family 26 and falls back to its Haswell (AVX2) kernels;
on a CPU with AVX-512 this script asks for its SkylakeX kernels (OPENBLAS_CORETYPE), the fastest
it has here, overriding this machine's environment (which sets OPENBLAS_CORETYPE=Haswell)."""
import os
import time

if "avx512f" in open("/proc/cpuinfo").read():
    os.environ["OPENBLAS_CORETYPE"] = "SKYLAKEX"
    os.environ.pop("OPENBLAS_L2_SIZE", None)

import numpy as np
from threadpoolctl import threadpool_limits

SHAPES = {  # name: (M, K, N) of the forward GEMM at batch 64
    "gemm 1024^3": (1024, 1024, 1024),
    "keras-cnn conv2 (57600x288x32)": (57600, 288, 32),
    "keras-cnn conv3 (14400x288x64)": (14400, 288, 64),
    "keras-cnn conv4 (10816x576x64)": (10816, 576, 64),
}


def rate(m, k, n, repeats=7):
    a = np.random.rand(m, k).astype(np.float32)
    b = np.random.rand(k, n).astype(np.float32)
    c = np.empty((m, n), dtype=np.float32)
    np.matmul(a, b, out=c)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.matmul(a, b, out=c)
        samples.append(2 * m * k * n / (time.perf_counter() - start) / 1e9)
    return sorted(samples)[len(samples) // 2]


config = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
print(f"numpy {np.__version__}, BLAS {config.get('name')} {config.get('version')}, "
      f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(detected)')}")
for name, (m, k, n) in SHAPES.items():
    rates = []
    for threads in (1, 2):
        with threadpool_limits(limits=threads, user_api="blas"):
            rates.append(rate(m, k, n))
    print(f"  {name:34s} 1 thread {rates[0]:7.1f}   2 threads {rates[1]:7.1f}")
