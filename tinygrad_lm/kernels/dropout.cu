// dropout.cu: inverted dropout's multiplier, drawn in one pass (backend.DeviceGenerator.dropout_mask).
//
//     z_i   = splitmix64(i * golden + offset),   offset = counter * golden + key   (mod 2^64)
//     u_2i  = low 32 bits of z_i,   u_2i+1 = high 32 bits of z_i
//     out_j = u_j >= threshold ? scale : 0,       threshold = ceil(p 2^32),  scale = 1 / (1 - p)
//
// splitmix64(z): z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27; z *= 0x94D049BB133111EB;
// z ^= z >> 31 (Steele, Lea and Flood's finaliser), all modulo 2^64. The numpy code of
// DeviceGenerator computes the same words with array operations (about a dozen passes over
// memory and as many launches); here each thread computes its words in registers and writes
// only the mask: the same bits, so a seed gives the same masks on every device.
//
// Grid-stride loop over the words: any n with any grid.
#include "common.cuh"

template <typename T>
__global__ void dropout_mask(T* __restrict__ out, long long n, unsigned long long offset, unsigned int threshold,
                             T scale) {
    const long long words = (n + 1) / 2;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < words; i += (long long)gridDim.x * blockDim.x) {
        unsigned long long z = (unsigned long long)i * 0x9E3779B97F4A7C15ULL + offset;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        z ^= z >> 31;
        out[2 * i] = (unsigned int)z >= threshold ? scale : T(0);
        if (2 * i + 1 < n) out[2 * i + 1] = (unsigned int)(z >> 32) >= threshold ? scale : T(0);
    }
}
