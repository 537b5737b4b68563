// attention.cu: fused scaled dot-product attention, forward and backward, in the style of
// FlashAttention-2 (Dao 2023): the (Tq, Tk) score matrix never exists in global memory.
//
//     S = q k^T * scale (keys j > i masked to -inf when causal),   P = softmax(S) (rows),   O = P v
//
//     D_i   = sum_j P_ij dP_ij = dO_i . O_i                  (FlashAttention's identity)
//     dV    = P^T dO,   dP = dO v^T,   dS = P * (dP - D),   dQ = dS k * scale,   dK = dS^T q * scale
//
// q, k, v, O and their gradients are (B, H, T, hd) views given by a pointer and element
// strides (Layout) for b, h and t; the last dim must be contiguous. That lets the packed
// (B, T, 3, H, hd) output of a GPT's c_attn projection be read in place and the output be
// written straight in (B, T, H, hd) order. hd <= 32 * NK (NK = 1, 2 or 4, a template
// argument, so the per-thread accumulators live in registers).
//
// Block layout (every kernel): 4 warps, 128 threads; each warp owns RW = 8 rows of its
// block's 32 rows (queries in the forward and dQ, keys in dK/dV). The other side is walked
// in tiles of 32 staged in shared memory, one lane per column of the tile:
// * lane j computes the scores of its key (or query) with the warp's 8 rows, reading its own
//   row of the padded tile (stride hd + 1: the 32 lanes hit 32 different banks) and the
//   warp's rows as broadcasts;
// * softmax runs online, per row (max and sum over the lanes by warp shuffles): m is the
//   running max, l the running sum of e^(s - m), acc the running P v, all rescaled by
//   e^(m_old - m_new) when the max grows;
// * products with the tile (P v, dS k, ...) give each lane the output columns lane + 32 kk,
//   with P_ij or dS_ij sent from lane j by a shuffle.
// Causal masking skips whole tiles above the diagonal. Fully masked rows (none with causal
// masking, since key 0 is always visible) would give O = 0 and LSE = -inf.
//
// Forward saves LSE_i = m_i + log l_i per query (B * H * Tq floats); the backward recomputes
// P_ij = e^(S_ij - LSE_i). It runs three kernels, each with its own loop and no atomics
// (deterministic; the price is computing q k^T twice): attn_bwd_delta (D), attn_bwd_dkdv (a
// block per 32 keys, looping over the queries that can see them) and attn_bwd_dq (a block
// per 32 queries, looping over their keys).
#include "common.cuh"

struct Layout { long long b, h, t; };           // element strides of a (B, H, T, hd) view
struct AttnDims { int H, Tq, Tk, hd, causal; };

#define ATTN_WARPS 4
#define ATTN_RW 8                               // rows per warp
#define ATTN_TILE 32                            // rows per block (= ATTN_WARPS * ATTN_RW) and columns per tile

// grid (ceil(Tq / 32), B * H), block 128. o: the output; lse: (B * H, Tq), contiguous.
template <typename T, int NK>
__global__ void attn_fwd(const T* __restrict__ q, Layout ql, const T* __restrict__ k, Layout kl,
                                                const T* __restrict__ v, Layout vl, T* __restrict__ o, Layout ol,
                                                T* __restrict__ lse, AttnDims dims, T scale) {
    TGLM_DYNAMIC_SHARED(T, smem);
    const int hd = dims.hd;
    T* qs = smem;                                // [32][hd]      the block's queries
    T* ks = qs + ATTN_TILE * hd;                 // [32][hd + 1]  a tile of keys (padded)
    T* vs = ks + ATTN_TILE * (hd + 1);           // [32][hd]      the same tile of values
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int z = blockIdx.y, bi = z / dims.H, hi = z % dims.H;
    const int q0 = blockIdx.x * ATTN_TILE;
    q += bi * ql.b + hi * ql.h;
    k += bi * kl.b + hi * kl.h;
    v += bi * vl.b + hi * vl.h;
    o += bi * ol.b + hi * ol.h;
    const T neg_inf = -Num<T>::inf();

    for (int e = threadIdx.x; e < ATTN_TILE * hd; e += blockDim.x) {
        const int r = e / hd, c = e - r * hd;
        qs[e] = q0 + r < dims.Tq ? q[(q0 + r) * ql.t + c] : T(0);
    }
    T m[ATTN_RW], l[ATTN_RW], acc[ATTN_RW][NK];
#pragma unroll
    for (int r = 0; r < ATTN_RW; ++r) {
        m[r] = neg_inf;
        l[r] = T(0);
#pragma unroll
        for (int kk = 0; kk < NK; ++kk) acc[r][kk] = T(0);
    }
    const int kv_end = dims.causal ? min(dims.Tk, q0 + ATTN_TILE) : dims.Tk;
    for (int k0 = 0; k0 < kv_end; k0 += ATTN_TILE) {
        __syncthreads();                         // everyone is done with the previous tile
        for (int e = threadIdx.x; e < ATTN_TILE * hd; e += blockDim.x) {
            const int r = e / hd, c = e - r * hd;
            const bool in = k0 + r < dims.Tk;
            ks[r * (hd + 1) + c] = in ? k[(k0 + r) * kl.t + c] : T(0);
            vs[e] = in ? v[(k0 + r) * vl.t + c] : T(0);
        }
        __syncthreads();
        // scores of key j = k0 + lane with the warp's rows
        T s[ATTN_RW];
#pragma unroll
        for (int r = 0; r < ATTN_RW; ++r) s[r] = T(0);
        for (int c = 0; c < hd; ++c) {
            const T kc = ks[lane * (hd + 1) + c];
#pragma unroll
            for (int r = 0; r < ATTN_RW; ++r) s[r] += qs[(warp * ATTN_RW + r) * hd + c] * kc;
        }
        const int j = k0 + lane;
        T p[ATTN_RW];
#pragma unroll
        for (int r = 0; r < ATTN_RW; ++r) {
            const int i = q0 + warp * ATTN_RW + r;
            const bool ok = j < dims.Tk && (!dims.causal || j <= i);
            const T sc = ok ? s[r] * scale : neg_inf;
            const T m_new = dmax(m[r], warp_reduce<MaxOp<T>>(sc));
            // m_new = -inf: this row has seen no visible key yet; everything stays zero
            p[r] = m_new == neg_inf ? T(0) : dexp(sc - m_new);
            const T alpha = m_new == neg_inf ? T(1) : dexp(m[r] - m_new);
            l[r] = l[r] * alpha + warp_reduce<SumOp<T>>(p[r]);
#pragma unroll
            for (int kk = 0; kk < NK; ++kk) acc[r][kk] *= alpha;
            m[r] = m_new;
        }
        // acc[r][kk] += sum_j P_rj v_j[lane + 32 kk]
#pragma unroll 2
        for (int jj = 0; jj < ATTN_TILE; ++jj) {
            T vj[NK];
#pragma unroll
            for (int kk = 0; kk < NK; ++kk) {
                const int c = lane + 32 * kk;
                vj[kk] = c < hd ? vs[jj * hd + c] : T(0);
            }
#pragma unroll
            for (int r = 0; r < ATTN_RW; ++r) {
                const T pj = __shfl_sync(FULL_MASK, p[r], jj);
#pragma unroll
                for (int kk = 0; kk < NK; ++kk) acc[r][kk] += pj * vj[kk];
            }
        }
    }
#pragma unroll
    for (int r = 0; r < ATTN_RW; ++r) {
        const int i = q0 + warp * ATTN_RW + r;
        if (i >= dims.Tq) continue;
        const T inv = l[r] > T(0) ? T(1) / l[r] : T(0);
#pragma unroll
        for (int kk = 0; kk < NK; ++kk) {
            const int c = lane + 32 * kk;
            if (c < hd) o[i * ol.t + c] = acc[r][kk] * inv;
        }
        if (lane == 0) lse[(size_t)z * dims.Tq + i] = l[r] > T(0) ? m[r] + dlog(l[r]) : neg_inf;
    }
}

// grid (ceil(Tq / 4), B * H), block 128: delta_i = dO_i . O_i, one warp per query row.
template <typename T>
__global__ void attn_bwd_delta(const T* __restrict__ o, Layout ol, const T* __restrict__ dout,
                                                      Layout dol, T* __restrict__ delta, AttnDims dims) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int z = blockIdx.y, bi = z / dims.H, hi = z % dims.H;
    const int i = blockIdx.x * ATTN_WARPS + warp;
    if (i >= dims.Tq) return;                    // the whole warp leaves together
    o += bi * ol.b + hi * ol.h + i * ol.t;
    dout += bi * dol.b + hi * dol.h + i * dol.t;
    T acc = T(0);
    for (int c = lane; c < dims.hd; c += 32) acc += o[c] * dout[c];
    acc = warp_reduce<SumOp<T>>(acc);
    if (lane == 0) delta[(size_t)z * dims.Tq + i] = acc;
}

// grid (ceil(Tk / 32), B * H), block 128: dK and dV for a block of 32 keys (8 per warp),
// looping over the tiles of 32 queries that can see them (lane = query).
template <typename T, int NK>
__global__ void attn_bwd_dkdv(const T* __restrict__ q, Layout ql, const T* __restrict__ k, Layout kl,
                                                     const T* __restrict__ v, Layout vl, const T* __restrict__ dout, Layout dol,
                                                     const T* __restrict__ lse, const T* __restrict__ delta,
                                                     T* __restrict__ dk, Layout dkl, T* __restrict__ dv, Layout dvl,
                                                     AttnDims dims, T scale) {
    TGLM_DYNAMIC_SHARED(T, smem);
    const int hd = dims.hd;
    T* ks = smem;                                // [32][hd]      the block's keys
    T* vs = ks + ATTN_TILE * hd;                 // [32][hd]      and values
    T* qs = vs + ATTN_TILE * hd;                 // [32][hd + 1]  a tile of queries (padded)
    T* dos = qs + ATTN_TILE * (hd + 1);          // [32][hd + 1]  and of dO
    T* ls = dos + ATTN_TILE * (hd + 1);          // [32]          their LSE
    T* ds_ = ls + ATTN_TILE;                     // [32]          and delta
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int z = blockIdx.y, bi = z / dims.H, hi = z % dims.H;
    const int k0 = blockIdx.x * ATTN_TILE;
    q += bi * ql.b + hi * ql.h;
    k += bi * kl.b + hi * kl.h;
    v += bi * vl.b + hi * vl.h;
    dout += bi * dol.b + hi * dol.h;
    dk += bi * dkl.b + hi * dkl.h;
    dv += bi * dvl.b + hi * dvl.h;
    lse += (size_t)z * dims.Tq;
    delta += (size_t)z * dims.Tq;
    const T neg_inf = -Num<T>::inf();

    for (int e = threadIdx.x; e < ATTN_TILE * hd; e += blockDim.x) {
        const int r = e / hd, c = e - r * hd;
        const bool in = k0 + r < dims.Tk;
        ks[e] = in ? k[(k0 + r) * kl.t + c] : T(0);
        vs[e] = in ? v[(k0 + r) * vl.t + c] : T(0);
    }
    T dk_acc[ATTN_RW][NK], dv_acc[ATTN_RW][NK];
#pragma unroll
    for (int r = 0; r < ATTN_RW; ++r)
#pragma unroll
        for (int kk = 0; kk < NK; ++kk) dk_acc[r][kk] = dv_acc[r][kk] = T(0);

    // with causal masking, query i sees key j only when i >= j >= k0
    const int q_begin = dims.causal ? (k0 / ATTN_TILE) * ATTN_TILE : 0;
    for (int qt = q_begin; qt < dims.Tq; qt += ATTN_TILE) {
        __syncthreads();
        for (int e = threadIdx.x; e < ATTN_TILE * hd; e += blockDim.x) {
            const int r = e / hd, c = e - r * hd;
            const bool in = qt + r < dims.Tq;
            qs[r * (hd + 1) + c] = in ? q[(qt + r) * ql.t + c] : T(0);
            dos[r * (hd + 1) + c] = in ? dout[(qt + r) * dol.t + c] : T(0);
        }
        const int t = threadIdx.x;
        if (t < ATTN_TILE) {
            const bool in = qt + t < dims.Tq;
            ls[t] = in ? lse[qt + t] : neg_inf;
            ds_[t] = in ? delta[qt + t] : T(0);
        }
        __syncthreads();
        T s[ATTN_RW], dp[ATTN_RW];
#pragma unroll
        for (int r = 0; r < ATTN_RW; ++r) s[r] = dp[r] = T(0);
        for (int c = 0; c < hd; ++c) {
            const T qc = qs[lane * (hd + 1) + c], doc = dos[lane * (hd + 1) + c];
#pragma unroll
            for (int r = 0; r < ATTN_RW; ++r) {
                s[r] += qc * ks[(warp * ATTN_RW + r) * hd + c];
                dp[r] += doc * vs[(warp * ATTN_RW + r) * hd + c];
            }
        }
        const int i = qt + lane;
        const T lse_i = ls[lane], delta_i = ds_[lane];
        T p[ATTN_RW], dsc[ATTN_RW];
#pragma unroll
        for (int r = 0; r < ATTN_RW; ++r) {
            const int j = k0 + warp * ATTN_RW + r;
            const bool ok = i < dims.Tq && j < dims.Tk && (!dims.causal || j <= i) && lse_i != neg_inf;
            p[r] = ok ? dexp(s[r] * scale - lse_i) : T(0);
            dsc[r] = p[r] * (dp[r] - delta_i);
        }
        // dv_j += sum_i P_ij dO_i,   dk_j += sum_i dS_ij q_i   (columns lane + 32 kk)
#pragma unroll 2
        for (int ii = 0; ii < ATTN_TILE; ++ii) {
            T qv[NK], dov[NK];
#pragma unroll
            for (int kk = 0; kk < NK; ++kk) {
                const int c = lane + 32 * kk;
                qv[kk] = c < hd ? qs[ii * (hd + 1) + c] : T(0);
                dov[kk] = c < hd ? dos[ii * (hd + 1) + c] : T(0);
            }
#pragma unroll
            for (int r = 0; r < ATTN_RW; ++r) {
                const T pi = __shfl_sync(FULL_MASK, p[r], ii), dsi = __shfl_sync(FULL_MASK, dsc[r], ii);
#pragma unroll
                for (int kk = 0; kk < NK; ++kk) {
                    dv_acc[r][kk] += pi * dov[kk];
                    dk_acc[r][kk] += dsi * qv[kk];
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < ATTN_RW; ++r) {
        const int j = k0 + warp * ATTN_RW + r;
        if (j >= dims.Tk) continue;
#pragma unroll
        for (int kk = 0; kk < NK; ++kk) {
            const int c = lane + 32 * kk;
            if (c < hd) {
                dk[j * dkl.t + c] = dk_acc[r][kk] * scale;
                dv[j * dvl.t + c] = dv_acc[r][kk];
            }
        }
    }
}

// grid (ceil(Tq / 32), B * H), block 128: dQ for a block of 32 queries (8 per warp), looping
// over their tiles of 32 keys (lane = key).
template <typename T, int NK>
__global__ void attn_bwd_dq(const T* __restrict__ q, Layout ql, const T* __restrict__ k, Layout kl,
                                                   const T* __restrict__ v, Layout vl, const T* __restrict__ dout, Layout dol,
                                                   const T* __restrict__ lse, const T* __restrict__ delta,
                                                   T* __restrict__ dq, Layout dql, AttnDims dims, T scale) {
    TGLM_DYNAMIC_SHARED(T, smem);
    const int hd = dims.hd;
    T* qs = smem;                                // [32][hd]      the block's queries
    T* dos = qs + ATTN_TILE * hd;                // [32][hd]      and their dO
    T* ks = dos + ATTN_TILE * hd;                // [32][hd + 1]  a tile of keys (padded)
    T* vs = ks + ATTN_TILE * (hd + 1);           // [32][hd + 1]  and of values (padded)
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int z = blockIdx.y, bi = z / dims.H, hi = z % dims.H;
    const int q0 = blockIdx.x * ATTN_TILE;
    q += bi * ql.b + hi * ql.h;
    k += bi * kl.b + hi * kl.h;
    v += bi * vl.b + hi * vl.h;
    dout += bi * dol.b + hi * dol.h;
    dq += bi * dql.b + hi * dql.h;
    lse += (size_t)z * dims.Tq;
    delta += (size_t)z * dims.Tq;
    const T neg_inf = -Num<T>::inf();

    for (int e = threadIdx.x; e < ATTN_TILE * hd; e += blockDim.x) {
        const int r = e / hd, c = e - r * hd;
        const bool in = q0 + r < dims.Tq;
        qs[e] = in ? q[(q0 + r) * ql.t + c] : T(0);
        dos[e] = in ? dout[(q0 + r) * dol.t + c] : T(0);
    }
    T lse_r[ATTN_RW], delta_r[ATTN_RW], dq_acc[ATTN_RW][NK];
#pragma unroll
    for (int r = 0; r < ATTN_RW; ++r) {
        const int i = q0 + warp * ATTN_RW + r;
        lse_r[r] = i < dims.Tq ? lse[i] : neg_inf;
        delta_r[r] = i < dims.Tq ? delta[i] : T(0);
#pragma unroll
        for (int kk = 0; kk < NK; ++kk) dq_acc[r][kk] = T(0);
    }
    const int kv_end = dims.causal ? min(dims.Tk, q0 + ATTN_TILE) : dims.Tk;
    for (int k0 = 0; k0 < kv_end; k0 += ATTN_TILE) {
        __syncthreads();
        for (int e = threadIdx.x; e < ATTN_TILE * hd; e += blockDim.x) {
            const int r = e / hd, c = e - r * hd;
            const bool in = k0 + r < dims.Tk;
            ks[r * (hd + 1) + c] = in ? k[(k0 + r) * kl.t + c] : T(0);
            vs[r * (hd + 1) + c] = in ? v[(k0 + r) * vl.t + c] : T(0);
        }
        __syncthreads();
        T s[ATTN_RW], dp[ATTN_RW];
#pragma unroll
        for (int r = 0; r < ATTN_RW; ++r) s[r] = dp[r] = T(0);
        for (int c = 0; c < hd; ++c) {
            const T kc = ks[lane * (hd + 1) + c], vc = vs[lane * (hd + 1) + c];
#pragma unroll
            for (int r = 0; r < ATTN_RW; ++r) {
                s[r] += qs[(warp * ATTN_RW + r) * hd + c] * kc;
                dp[r] += dos[(warp * ATTN_RW + r) * hd + c] * vc;
            }
        }
        const int j = k0 + lane;
        T dsc[ATTN_RW];
#pragma unroll
        for (int r = 0; r < ATTN_RW; ++r) {
            const int i = q0 + warp * ATTN_RW + r;
            const bool ok = i < dims.Tq && j < dims.Tk && (!dims.causal || j <= i) && lse_r[r] != neg_inf;
            const T p = ok ? dexp(s[r] * scale - lse_r[r]) : T(0);
            dsc[r] = p * (dp[r] - delta_r[r]);
        }
        // dq_i += sum_j dS_ij k_j   (columns lane + 32 kk)
#pragma unroll 2
        for (int jj = 0; jj < ATTN_TILE; ++jj) {
            T kv[NK];
#pragma unroll
            for (int kk = 0; kk < NK; ++kk) {
                const int c = lane + 32 * kk;
                kv[kk] = c < hd ? ks[jj * (hd + 1) + c] : T(0);
            }
#pragma unroll
            for (int r = 0; r < ATTN_RW; ++r) {
                const T dsj = __shfl_sync(FULL_MASK, dsc[r], jj);
#pragma unroll
                for (int kk = 0; kk < NK; ++kk) dq_acc[r][kk] += dsj * kv[kk];
            }
        }
    }
#pragma unroll
    for (int r = 0; r < ATTN_RW; ++r) {
        const int i = q0 + warp * ATTN_RW + r;
        if (i >= dims.Tq) continue;
#pragma unroll
        for (int kk = 0; kk < NK; ++kk) {
            const int c = lane + 32 * kk;
            if (c < hd) dq[i * dql.t + c] = dq_acc[r][kk] * scale;
        }
    }
}
