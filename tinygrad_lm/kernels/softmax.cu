// softmax.cu: softmax and log-softmax over the last dim of a (rows, cols) array, forward and
// backward. One block per row, any row length: each thread walks the row with a stride of
// blockDim.x (coalesced), then the block combines the threads' partial results.
//
// Forward, with m = max_j x_j and s = sum_j e^(x_j - m) (the max cancels; it keeps e^ <= 1):
//     softmax:      p_j = e^(x_j - m) / s
//     log_softmax:  y_j = x_j - m - log s
// A row of all -inf has (m, s) = (-inf, 0): softmax gives zeros (tinygrad_lm's convention, so
// a fully masked row cannot poison its neighbours), log_softmax gives NaN (as PyTorch).
// Passes over memory: 2 reads of x (online (m, s), then the output) and 1 write.
//
// Backward, given g = dL/dy:
//     softmax:      dL/dx_j = p_j (g_j - sum_k g_k p_k)
//     log_softmax:  dL/dx_j = g_j - e^(y_j) sum_k g_k          (e^y = softmax(x))
// Passes: 2 reads of (g, saved output), 1 write.
#include "common.cuh"

template <typename T>
__device__ __forceinline__ MaxSum<T> row_maxsum(const T* __restrict__ x, int cols) {
    __shared__ MaxSum<T> scratch[32];
    MaxSum<T> ms{-Num<T>::inf(), T(0)};
    for (int j = threadIdx.x; j < cols; j += blockDim.x) ms = maxsum_add(ms, x[j]);
    return block_maxsum(ms, scratch);
}

// grid (rows), block (threads): y = softmax(x) over each row of `cols` entries.
template <typename T>
__global__ void softmax_fwd(const T* __restrict__ x, T* __restrict__ y, int cols) {
    const size_t row = blockIdx.x;
    x += row * cols;
    y += row * cols;
    const MaxSum<T> ms = row_maxsum(x, cols);
    const T inv = ms.s > T(0) ? T(1) / ms.s : T(0);     // all -inf row: s = 0, p = 0
    for (int j = threadIdx.x; j < cols; j += blockDim.x)
        y[j] = ms.s > T(0) ? dexp(x[j] - ms.m) * inv : T(0);
}

// y = log_softmax(x) = x - m - log s.
template <typename T>
__global__ void log_softmax_fwd(const T* __restrict__ x, T* __restrict__ y, int cols) {
    const size_t row = blockIdx.x;
    x += row * cols;
    y += row * cols;
    const MaxSum<T> ms = row_maxsum(x, cols);
    const T log_s = dlog(ms.s);                           // all -inf row: -inf - -inf - -inf = NaN
    for (int j = threadIdx.x; j < cols; j += blockDim.x) y[j] = (x[j] - ms.m) - log_s;
}

// dx = p (g - sum_k g_k p_k), p the saved softmax output.
template <typename T>
__global__ void softmax_bwd(const T* __restrict__ p, const T* __restrict__ g, T* __restrict__ dx, int cols) {
    __shared__ T scratch[32];
    const size_t row = blockIdx.x;
    p += row * cols;
    g += row * cols;
    dx += row * cols;
    T dot = T(0);
    for (int j = threadIdx.x; j < cols; j += blockDim.x) dot += g[j] * p[j];
    dot = block_reduce<SumOp<T>>(dot, scratch);
    for (int j = threadIdx.x; j < cols; j += blockDim.x) dx[j] = (g[j] - dot) * p[j];
}

// dx = g - e^y sum_k g_k, y the saved log_softmax output.
template <typename T>
__global__ void log_softmax_bwd(const T* __restrict__ y, const T* __restrict__ g, T* __restrict__ dx, int cols) {
    __shared__ T scratch[32];
    const size_t row = blockIdx.x;
    y += row * cols;
    g += row * cols;
    dx += row * cols;
    T tot = T(0);
    for (int j = threadIdx.x; j < cols; j += blockDim.x) tot += g[j];
    tot = block_reduce<SumOp<T>>(tot, scratch);
    for (int j = threadIdx.x; j < cols; j += blockDim.x) dx[j] = g[j] - dexp(y[j]) * tot;
}
