// adamw.cu: one AdamW (or Adam) step over many parameter tensors in one launch.
//
// PyTorch's update, per element of parameter p with gradient g, at the tensor's step t:
//     p = p * (1 - lr wd)                          decoupled weight decay (AdamW)
//     g = g + wd p                                 L2 weight decay (Adam), instead
//     m = b1 m + (1 - b1) g,    v = b2 v + (1 - b2) g^2
//     p = p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
//       = p + step_scale * m / (sqrt(v) + eps_hat),
//         step_scale = -lr sqrt(1 - b2^t) / (1 - b1^t),   eps_hat = eps sqrt(1 - b2^t)
// The host folds lr, t and the betas into a few numbers per (group, step) "slot", so the
// kernel does no pow() and the learning rate can change every step without recompiling.
//
// The tensors come in a table passed by value as the kernel's argument (4 KB of parameter
// space, no host-to-device copy): their addresses, sizes and slots, and the first block of
// each, and `skip`: null, or the address of a device bool (the training loop's found_inf,
// set when the step's loss or gradient norm is not finite) that makes every block return at
// once, so a diverged step changes nothing without the host reading the flag. Block b finds its tensor (the last one whose first block is <= b) and updates a chunk
// of ADAMW_CHUNK elements of it; 256 threads, so each thread handles 16 elements with
// coalesced loads. One read of p, g, m, v and one write of p, m, v per element, where the
// array code in optim.py makes a pass over memory for each of its dozen array operations.
#include "common.cuh"

#define ADAMW_MAX_TENSORS 64
#define ADAMW_MAX_SLOTS 8
#define ADAMW_CHUNK 4096

template <typename T> struct AdamWSlot {
    T b1, one_minus_b1, b2, one_minus_b2;
    T decay;         // 1 - lr wd (decoupled) or 1
    T l2;            // wd (L2 mode) or 0
    T step_scale;    // -lr sqrt(1 - b2^t) / (1 - b1^t)
    T eps_hat;       // eps sqrt(1 - b2^t)
};

template <typename T> struct AdamWTable {
    T* p[ADAMW_MAX_TENSORS];
    const T* g[ADAMW_MAX_TENSORS];
    T* m[ADAMW_MAX_TENSORS];
    T* v[ADAMW_MAX_TENSORS];
    long long n[ADAMW_MAX_TENSORS];
    AdamWSlot<T> slot[ADAMW_MAX_SLOTS];
    int block_start[ADAMW_MAX_TENSORS + 1];      // tensor i owns blocks [block_start[i], block_start[i + 1])
    unsigned char slot_of[ADAMW_MAX_TENSORS];
    int count;                                   // tensors in the table
    const bool* skip;                            // null, or a device flag: set = change nothing
};

// grid (block_start[count]), block 256.
template <typename T>
__global__ void __launch_bounds__(256) adamw_step(const AdamWTable<T> tab) {
    if (tab.skip != nullptr && *tab.skip) return;                  // uniform: every thread reads the one flag
    const int b = blockIdx.x;
    int i = 0;
    while (i + 1 < tab.count && tab.block_start[i + 1] <= b) ++i;   // at most 64 steps, uniform in the block
    const AdamWSlot<T> s = tab.slot[tab.slot_of[i]];
    T* __restrict__ p = tab.p[i];
    const T* __restrict__ g = tab.g[i];
    T* __restrict__ m = tab.m[i];
    T* __restrict__ v = tab.v[i];
    const long long start = (long long)(b - tab.block_start[i]) * ADAMW_CHUNK;
    const long long end = start + ADAMW_CHUNK < tab.n[i] ? start + ADAMW_CHUNK : tab.n[i];
    for (long long j = start + threadIdx.x; j < end; j += blockDim.x) {
        T w = p[j], gr = g[j];
        if (s.l2 != T(0)) gr += s.l2 * w;
        w *= s.decay;
        const T mj = m[j] * s.b1 + gr * s.one_minus_b1;
        const T vj = v[j] * s.b2 + (gr * gr) * s.one_minus_b2;
        p[j] = w + s.step_scale * (mj / (dsqrt(vj) + s.eps_hat));
        m[j] = mj;
        v[j] = vj;
    }
}
