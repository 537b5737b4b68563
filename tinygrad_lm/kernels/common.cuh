// common.cuh: helpers shared by every kernel file (the loader inlines it where a .cu file
// includes it, with #line markers, so diagnostics still name the right file and line).
//
// Conventions of all tinygrad_lm kernels:
// * templated on the float type T (float for training, double for gradchecks); the host
//   picks the instantiation by name ("softmax_fwd<float>");
// * blockDim.x is a multiple of 32 (whole warps) and at most 1024; the host chooses it;
// * every reduction runs in a fixed order (a strided per-thread sum, then a tree over lanes
//   and warps), never with atomics, so a kernel gives bit-identical results run after run;
// * nothing here needs a header: NVRTC compiles it as it is, and the CPU emulation under
//   tests/ compiles the same text with g++ after defining the CUDA built-ins it uses.
#ifndef TGLM_COMMON_CUH
#define TGLM_COMMON_CUH

#define FULL_MASK 0xffffffffu

// ---------------------------------------------------------------- float-type traits
template <typename T> struct Num;
template <> struct Num<float> {
    __device__ __forceinline__ static float inf() { return __int_as_float(0x7f800000); }
};
template <> struct Num<double> {
    __device__ __forceinline__ static double inf() { return __longlong_as_double(0x7ff0000000000000LL); }
};

// One name per math function for both float types (the C names differ: expf / exp).
__device__ __forceinline__ float dexp(float x) { return expf(x); }
__device__ __forceinline__ double dexp(double x) { return exp(x); }
__device__ __forceinline__ float dlog(float x) { return logf(x); }
__device__ __forceinline__ double dlog(double x) { return log(x); }
__device__ __forceinline__ float dsqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double dsqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float dtanh(float x) { return tanhf(x); }
__device__ __forceinline__ double dtanh(double x) { return tanh(x); }
__device__ __forceinline__ float derf(float x) { return erff(x); }
__device__ __forceinline__ double derf(double x) { return erf(x); }
__device__ __forceinline__ float dmax(float a, float b) { return fmaxf(a, b); }
__device__ __forceinline__ double dmax(double a, double b) { return fmax(a, b); }

// ---------------------------------------------------------------- reductions
// Reduction operators: op(a, b) combines two partial results; identity() is the neutral one.
template <typename T> struct SumOp {
    __device__ __forceinline__ static T identity() { return T(0); }
    __device__ __forceinline__ static T apply(T a, T b) { return a + b; }
};
template <typename T> struct MaxOp {
    __device__ __forceinline__ static T identity() { return -Num<T>::inf(); }
    __device__ __forceinline__ static T apply(T a, T b) { return dmax(a, b); }
};

// Reduce over the 32 lanes of a warp (butterfly: every lane ends with the result).
template <typename Op, typename T>
__device__ __forceinline__ T warp_reduce(T v) {
    for (int off = 16; off > 0; off >>= 1) v = Op::apply(v, __shfl_xor_sync(FULL_MASK, v, off));
    return v;
}

// Reduce over the whole block; every thread gets the result. `scratch` is a __shared__
// array of 32 T. The first barrier lets a block call this twice in a row with the same
// scratch (the second call must not overwrite what slow warps still read from the first).
template <typename Op, typename T>
__device__ __forceinline__ T block_reduce(T v, T* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = warp_reduce<Op>(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < nwarps ? scratch[lane] : Op::identity();
    return warp_reduce<Op>(v);      // every warp reduces the same nwarps values
}

// Two sums at once (one pair of barriers instead of two).
template <typename T> struct Pair { T a, b; };
template <typename T>
__device__ __forceinline__ Pair<T> block_sum2(Pair<T> v, Pair<T>* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    for (int off = 16; off > 0; off >>= 1) {
        v.a += __shfl_xor_sync(FULL_MASK, v.a, off);
        v.b += __shfl_xor_sync(FULL_MASK, v.b, off);
    }
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    Pair<T> r = lane < nwarps ? scratch[lane] : Pair<T>{T(0), T(0)};
    for (int off = 16; off > 0; off >>= 1) {
        r.a += __shfl_xor_sync(FULL_MASK, r.a, off);
        r.b += __shfl_xor_sync(FULL_MASK, r.b, off);
    }
    return r;
}

// ---------------------------------------------------------------- online softmax statistics
// (m, s) summarises a set of logits x_j as m = max_j x_j and s = sum_j e^(x_j - m), in one
// pass (Milakov & Gimelshein 2018). Folding in x: if x > m, the old sum is rescaled to the new
// max, s = s e^(m - x) + 1; otherwise s += e^(x - m). -inf entries add nothing, so an all -inf
// set stays (m, s) = (-inf, 0); a NaN makes s NaN.
template <typename T> struct MaxSum { T m, s; };

template <typename T>
__device__ __forceinline__ MaxSum<T> maxsum_add(MaxSum<T> a, T x) {
    if (x > a.m) {
        a.s = a.s * dexp(a.m - x) + T(1);   // a.m = -inf: e^-inf = 0
        a.m = x;
    } else if (x != -Num<T>::inf()) {
        a.s += dexp(x - a.m);
    }
    return a;
}

// Merging two summaries: rescale both sums to the larger max.
template <typename T>
__device__ __forceinline__ MaxSum<T> maxsum_merge(MaxSum<T> a, MaxSum<T> b) {
    const T m = dmax(a.m, b.m);
    if (m == -Num<T>::inf()) return MaxSum<T>{m, T(0)};
    return MaxSum<T>{m, a.s * dexp(a.m - m) + b.s * dexp(b.m - m)};
}

template <typename T>
__device__ __forceinline__ MaxSum<T> block_maxsum(MaxSum<T> v, MaxSum<T>* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    for (int off = 16; off > 0; off >>= 1) {
        MaxSum<T> o{__shfl_xor_sync(FULL_MASK, v.m, off), __shfl_xor_sync(FULL_MASK, v.s, off)};
        v = maxsum_merge(v, o);
    }
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    MaxSum<T> r = lane < nwarps ? scratch[lane] : MaxSum<T>{-Num<T>::inf(), T(0)};
    for (int off = 16; off > 0; off >>= 1) {
        MaxSum<T> o{__shfl_xor_sync(FULL_MASK, r.m, off), __shfl_xor_sync(FULL_MASK, r.s, off)};
        r = maxsum_merge(r, o);
    }
    return r;
}

// Dynamic shared memory (its size is set at launch), as a T*. The CPU emulation under
// tests/ defines TGLM_DYNAMIC_SHARED itself before including this file.
#ifndef TGLM_DYNAMIC_SHARED
#define TGLM_DYNAMIC_SHARED(T, name) \
    extern __shared__ __align__(16) unsigned char name##_raw[]; \
    T* name = reinterpret_cast<T*>(name##_raw)
#endif

#endif  // TGLM_COMMON_CUH
