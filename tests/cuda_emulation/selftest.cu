// Deliberately broken kernels: the emulation's own tests check that it catches each mistake.
// (Compiled only into the emulation library, never into tinygrad_lm.)
#include "common.cuh"

// Reverses each block's slice through shared memory, with or without the barrier between the
// write and the read. Without it, a thread reads a slot its partner has not written yet.
__global__ void selftest_reverse(const float* x, float* y, int barrier) {
    __shared__ float buf[64];
    const int t = threadIdx.x, base = blockIdx.x * blockDim.x;
    buf[t] = x[base + t];
    if (barrier) __syncthreads();
    y[base + t] = buf[blockDim.x - 1 - t];
}

// Threads past n return before a barrier the others wait at.
__global__ void selftest_early_return(float* y, int n) {
    const int t = threadIdx.x;
    if (t >= n) return;
    __syncthreads();
    y[t] = 1.0f;
}

// Writes one element past the end of y (n entries).
__global__ void selftest_overflow(float* y, int n) {
    const int t = threadIdx.x;
    if (t <= n) y[t] = 2.0f;
}

// A warp sum: the butterfly from common.cuh.
__global__ void selftest_warp_sum(const float* x, float* y) {
    const float s = warp_reduce<SumOp<float>>(x[threadIdx.x]);
    y[threadIdx.x] = s;
}
