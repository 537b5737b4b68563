// gelu.cu: GELU, y = x Phi(x), elementwise over n entries, forward and backward.
//
// exact (approximate = 0):  Phi(x) = (1 + erf(x / sqrt 2)) / 2
//                           dy/dx = Phi(x) + x phi(x),  phi(x) = e^(-x^2 / 2) / sqrt(2 pi)
// tanh (approximate = 1, GPT-2's):
//                           y = x s,  s = (1 + tanh u) / 2,  u = c (x + k x^3),  c = sqrt(2/pi), k = 0.044715
//                           dy/dx = s + x (1 - tanh^2 u) c (1 + 3 k x^2) / 2
//
// Grid-stride loops: any n with any grid. One read (and one write) per pass; the backward
// recomputes Phi from x instead of saving it (one array less to keep between the passes).
#include "common.cuh"

template <typename T>
__device__ __forceinline__ void gelu_parts(T x, int approximate, T* phi, T* dphi_x) {
    // phi: the gate (Phi or s); dphi_x: x times the gate's derivative
    if (approximate) {
        const T c = T(0.7978845608028654), k = T(0.044715);
        const T t = dtanh(c * (x + k * x * x * x));
        *phi = T(0.5) * (T(1) + t);
        *dphi_x = T(0.5) * x * (T(1) - t * t) * c * (T(1) + T(3) * k * x * x);
    } else {
        *phi = T(0.5) * (T(1) + derf(x * T(0.7071067811865476)));
        *dphi_x = x * dexp(T(-0.5) * x * x) * T(0.3989422804014327);
    }
}

template <typename T>
__global__ void gelu_fwd(const T* __restrict__ x, T* __restrict__ y, long long n, int approximate) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        T phi, dphi_x;
        gelu_parts(x[i], approximate, &phi, &dphi_x);
        y[i] = x[i] * phi;
    }
}

template <typename T>
__global__ void gelu_bwd(const T* __restrict__ x, const T* __restrict__ g, T* __restrict__ dx, long long n,
                         int approximate) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        T phi, dphi_x;
        gelu_parts(x[i], approximate, &phi, &dphi_x);
        dx[i] = g[i] * (phi + dphi_x);
    }
}
