// cross_entropy.cu: softmax + cross-entropy of logits x (N, C) against integer targets y (N,),
// with label smoothing eps and rows whose target is ignore_index left out. One block per row.
//
//     q_i     = (1 - eps) onehot(y_i) + eps / C                  (the target distribution)
//     loss_i  = -sum_c q_ic log softmax(x_i)_c
//             = (1 - eps) (log s_i - (x_iy - m_i)) + eps (log s_i - mean_c (x_ic - m_i))
//               with m_i = max_c x_ic, s_i = sum_c e^(x_ic - m_i); loss_i = 0 for ignored rows
//     mean:  L = sum_i loss_i / N_valid,   sum: L = sum_i loss_i,   none: L_i = loss_i
//
//     dL/dx_ic = w_i (e^(x_ic - m_i) / s_i - q_ic)
//             w_i = g / max(N_valid, 1) (mean),  g (sum),  g_i (none);  w_i = 0 for ignored rows
//             (selected, so an inf or NaN g never reaches an ignored row, as in PyTorch)
//
// Written relative to m_i, never as (m_i + log s_i) - x_iy: with logits near 1e4 the sum
// m + log s would round to float32's spacing there (1e-3) and the loss would lose 3 digits.
// The forward saves (m_i, 1/s_i) per row (8 bytes a row, instead of the (N, C) softmax the
// numpy path keeps), and the backward recomputes e^(x - m) / s from x.
//
// As the numpy path and PyTorch: an all-ignored batch gives L = 0/0 = NaN for 'mean' and a zero
// gradient: max(N_valid, 1) only differs from N_valid at 0, where it makes each ignored row's
// w_i = 0 instead of 0 * (g / 0) = NaN. The count is read from device memory: no host sync.
#include "common.cuh"

// grid (N), block (threads). loss (N,), stats (N, 2) = (m_i, 1 / s_i).
template <typename T>
__global__ void cross_entropy_fwd(const T* __restrict__ x, const long long* __restrict__ y, T* __restrict__ loss,
                                  T* __restrict__ stats, int cols, long long ignore_index, T eps) {
    __shared__ MaxSum<T> scratch_ms[32];
    __shared__ T scratch[32];
    const size_t row = blockIdx.x;
    x += row * cols;
    const long long target = y[row];
    const bool valid = target != ignore_index;

    MaxSum<T> ms{-Num<T>::inf(), T(0)};
    for (int j = threadIdx.x; j < cols; j += blockDim.x) ms = maxsum_add(ms, x[j]);
    ms = block_maxsum(ms, scratch_ms);
    const T m = ms.m == -Num<T>::inf() ? T(0) : ms.m;   // an all -inf row shifts by 0, as numpy's path

    // eps > 0 needs mean_c (x_c - m): a second pass, now that m is known (summing x first and
    // subtracting m afterwards would cancel catastrophically for large logits).
    T shifted_sum = T(0);
    if (eps != T(0)) {
        for (int j = threadIdx.x; j < cols; j += blockDim.x) shifted_sum += x[j] - m;
        shifted_sum = block_reduce<SumOp<T>>(shifted_sum, scratch);
    }
    if (threadIdx.x == 0) {
        const T log_s = dlog(ms.s);
        T l = T(0);
        if (valid) {
            const T picked = x[target] - m;          // the host checked 0 <= target < cols
            l = (T(1) - eps) * (log_s - picked);
            if (eps != T(0)) l += eps * (log_s - shifted_sum / T(cols));
        }
        loss[row] = l;
        stats[2 * row] = m;
        stats[2 * row + 1] = ms.s > T(0) ? T(1) / ms.s : T(1);   // an all -inf row: e^-inf / 1 = 0
    }
}

// grid (1), block (threads): out[0] = sum_i loss_i (or its mean over the valid rows),
// out[1] = N_valid. One block, so the order of the sum is fixed.
template <typename T>
__global__ void cross_entropy_reduce(const T* __restrict__ loss, const long long* __restrict__ y, T* __restrict__ out,
                                     int n, long long ignore_index, int mean) {
    __shared__ Pair<T> scratch[32];
    Pair<T> acc{T(0), T(0)};
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        acc.a += loss[i];
        acc.b += y[i] != ignore_index ? T(1) : T(0);
    }
    acc = block_sum2(acc, scratch);
    if (threadIdx.x == 0) {
        out[0] = mean ? acc.a / acc.b : acc.a;
        out[1] = acc.b;
    }
}

// grid (N), block (threads): dx = w_i (softmax(x_i) - q_i).
// mode 0 ('none'): g has N entries; mode 1 ('sum'): g[0]; mode 2 ('mean'): g[0] / max(count[0], 1).
template <typename T>
__global__ void cross_entropy_bwd(const T* __restrict__ x, const long long* __restrict__ y, const T* __restrict__ stats,
                                  const T* __restrict__ g, const T* __restrict__ count, T* __restrict__ dx, int cols,
                                  long long ignore_index, T eps, int mode) {
    const size_t row = blockIdx.x;
    x += row * cols;
    dx += row * cols;
    const long long target = y[row];
    // a select, not a multiply: an ignored row gets 0 even where g is inf or NaN
    const T w = target == ignore_index ? T(0)
              : (mode == 0 ? g[row] : mode == 1 ? g[0] : g[0] / (count[0] > T(1) ? count[0] : T(1)));
    const T m = stats[2 * row], inv_s = stats[2 * row + 1];
    const T wp = w * inv_s, smooth = w * (eps / T(cols)), hit = w * (T(1) - eps);
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        T d = dexp(x[j] - m) * wp - smooth;
        if (j == target) d -= hit;
        dx[j] = d;
    }
}
