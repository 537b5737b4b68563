// layernorm.cu: layer norm over the last D entries of x viewed as (N, D), forward and backward.
//
//     mu = mean(x),  rstd = 1 / sqrt(var(x) + eps)  (population variance),  xhat = (x - mu) rstd
//     y  = xhat * w + b                                   (w, b optional: null pointers)
//
//     dL/db = sum_rows dy,   dL/dw = sum_rows dy * xhat,
//     dL/dx = rstd (g - mean(g) - xhat mean(g xhat)),   g = dy * w  (g = dy without a weight)
//
// Forward: one block per row; 3 reads of the row (mean, variance about the mean, output) and
// 1 write; the variance is taken about the mean, not as E[x^2] - mu^2, which cancels badly.
// Saves mu and rstd (2 floats a row) instead of xhat (N, D).
//
// Backward, deterministic and without atomics, in two kernels:
// 1. layernorm_bwd: a grid of G blocks; block b handles rows b, b + G, ... For each row it
//    writes dx and adds dy * xhat and dy into per-column accumulators in shared memory
//    (2 D floats; thread t owns columns t, t + blockDim.x, ..., so no two threads touch the
//    same column and no barrier is needed for them). At the end the block writes its
//    accumulators to partial[b] (G, 2, D).
// 2. layernorm_param_bwd: one thread per column sums partial[:, :, col] over the G blocks in
//    order: dL/dw and dL/db.
#include "common.cuh"

// grid (N), block (threads). mean, rstd: (N,).
template <typename T>
__global__ void layernorm_fwd(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b,
                              T* __restrict__ y, T* __restrict__ mean, T* __restrict__ rstd, int d, T eps) {
    __shared__ T scratch[32];
    const size_t row = blockIdx.x;
    x += row * d;
    y += row * d;
    T acc = T(0);
    for (int j = threadIdx.x; j < d; j += blockDim.x) acc += x[j];
    const T mu = block_reduce<SumOp<T>>(acc, scratch) / T(d);
    acc = T(0);
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
        const T c = x[j] - mu;
        acc += c * c;
    }
    const T var = block_reduce<SumOp<T>>(acc, scratch) / T(d);
    const T rs = T(1) / dsqrt(var + eps);
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
        T v = (x[j] - mu) * rs;
        if (w) v *= w[j];
        if (b) v += b[j];
        y[j] = v;
    }
    if (threadIdx.x == 0) {
        mean[row] = mu;
        rstd[row] = rs;
    }
}

// grid (G), block (threads), dynamic shared memory 2 * d * sizeof(T) when partial is not null.
// dx may be null (no input gradient needed); partial may be null (no weight/bias gradient).
template <typename T>
__global__ void layernorm_bwd(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ w,
                              const T* __restrict__ mean, const T* __restrict__ rstd, T* __restrict__ dx,
                              T* __restrict__ partial, int n, int d) {
    __shared__ Pair<T> scratch[32];
    TGLM_DYNAMIC_SHARED(T, acc);          // acc[0, d): sum dy * xhat;  acc[d, 2d): sum dy
    if (partial) {
        for (int j = threadIdx.x; j < d; j += blockDim.x) {
            acc[j] = T(0);
            acc[d + j] = T(0);
        }
    }
    for (int row = blockIdx.x; row < n; row += gridDim.x) {
        const T* dyr = dy + (size_t)row * d;
        const T* xr = x + (size_t)row * d;
        const T mu = mean[row], rs = rstd[row];
        if (partial) {
            for (int j = threadIdx.x; j < d; j += blockDim.x) {
                const T xhat = (xr[j] - mu) * rs;
                acc[j] += dyr[j] * xhat;
                acc[d + j] += dyr[j];
            }
        }
        if (dx) {
            Pair<T> s{T(0), T(0)};                        // sum g, sum g * xhat
            for (int j = threadIdx.x; j < d; j += blockDim.x) {
                const T g = w ? dyr[j] * w[j] : dyr[j];
                s.a += g;
                s.b += g * ((xr[j] - mu) * rs);
            }
            s = block_sum2(s, scratch);
            const T mean_g = s.a / T(d), mean_gx = s.b / T(d);
            T* dxr = dx + (size_t)row * d;
            for (int j = threadIdx.x; j < d; j += blockDim.x) {
                const T g = w ? dyr[j] * w[j] : dyr[j];
                dxr[j] = (g - mean_g - ((xr[j] - mu) * rs) * mean_gx) * rs;
            }
        }
    }
    if (partial) {
        T* out = partial + (size_t)blockIdx.x * 2 * d;
        for (int j = threadIdx.x; j < d; j += blockDim.x) {
            out[j] = acc[j];
            out[d + j] = acc[d + j];
        }
    }
}

// grid (ceil(d / threads)), block (threads): dw[j] = sum_b partial[b, 0, j], db[j] = sum_b partial[b, 1, j].
// dw or db may be null.
template <typename T>
__global__ void layernorm_param_bwd(const T* __restrict__ partial, T* __restrict__ dw, T* __restrict__ db, int g, int d) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= d) return;
    T sw = T(0), sb = T(0);
    for (int b = 0; b < g; ++b) {
        sw += partial[(size_t)b * 2 * d + j];
        sb += partial[(size_t)b * 2 * d + d + j];
    }
    if (dw) dw[j] = sw;
    if (db) db[j] = sb;
}
