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

// Two block-wide sums in a row through the same 32-slot scratch, with or without the barrier
// that keeps the second from overwriting slots the first is still reading (common.cuh's
// block_reduce has it). Every warp writes what it got: y[2 w] = sum x, y[2 w + 1] = sum 2x.
__global__ void selftest_reduce_twice(const float* x, float* y, int guard) {
    __shared__ float scratch[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    float total[2];
    for (int k = 0; k < 2; ++k) {
        float v = warp_reduce<SumOp<float>>(x[threadIdx.x] * float(k + 1));
        if (guard) __syncthreads();
        if (lane == 0) scratch[warp] = v;
        __syncthreads();
        v = lane < nwarps ? scratch[lane] : 0.0f;
        total[k] = warp_reduce<SumOp<float>>(v);
    }
    if (lane == 0) {
        y[2 * warp] = total[0];
        y[2 * warp + 1] = total[1];
    }
}
