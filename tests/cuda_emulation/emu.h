// CPU emulation of the CUDA built-ins that tinygrad_lm's kernels use, so that g++ can compile
// the very same kernel source and run it on the CPU. It checks the kernels' arithmetic and
// indexing, not the GPU: there are no real warps, no memory model and no speed here.
//
// Model: a launch runs its blocks one after another. A block's threads are fibers (cooperative
// user-space threads) on one OS thread; a fiber runs until it reaches a barrier
// (__syncthreads, a warp shuffle) or returns, then the next runnable fiber runs. So:
// * __shared__ variables are function-local statics: one block at a time uses them;
// * a missing barrier shows up as a wrong result: each warp runs as far as it can (through its
//   shuffles) before the next warp gets a turn, so one warp overwrites shared memory another has
//   not read yet (and a launch can run blocks, warps and lanes in reverse order too);
// * a __syncthreads reached by only some threads (an early return, a divergent branch) or at
//   different lines is reported as an error, as is a shuffle whose warp has exited lanes;
// * warp shuffles exchange values through per-warp buffers (two, used in turn) at a warp barrier;
// * dynamic shared memory is filled with 0xFF bytes (NaN for floats) at the start of every
//   block and guarded by a canary after its end.
// Kernel arguments arrive as cuLaunchKernel gets them (void** args); the launcher checks each
// one's size and kind against the kernel's signature (cupy would pass a wrong one silently).
#pragma once

// (kept to light headers: it is parsed once per build, with all the kernels after it)
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <type_traits>
#include <typeinfo>
#include <utility>

struct uint3 {
    unsigned int x, y, z;
};
typedef uint3 dim3;

namespace emu {
struct Ctx {
    uint3 tidx, bidx, bdim, gdim;
};
extern Ctx ctx;
void syncthreads(const char* file, int line);
void syncwarp(unsigned mask, const char* file, int line);
unsigned long long exchange(unsigned mask, unsigned long long bits, int mode, int arg, int width, const char* file,
                            int line);
void* dynamic_shared();
[[noreturn]] void fail(const char* msg);
// runs thunk(data) as every thread of every block; 0, or 1 with a message in err
int run_grid(const unsigned* grid, const unsigned* block, unsigned long long shared, int reverse,
             void (*thunk)(void*), void* data, char* err, int err_len);
void type_name(const char* mangled, char* out, int len);   // demangled
enum { SHFL_XOR = 0, SHFL_DOWN = 1, SHFL_UP = 2, SHFL_IDX = 3 };
}  // namespace emu

#define threadIdx (::emu::ctx.tidx)
#define blockIdx (::emu::ctx.bidx)
#define blockDim (::emu::ctx.bdim)
#define gridDim (::emu::ctx.gdim)
#define warpSize 32

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
#define TGLM_DYNAMIC_SHARED(T, name) T* name = reinterpret_cast<T*>(::emu::dynamic_shared())

inline void __syncthreads(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    ::emu::syncthreads(file, line);
}
inline void __syncwarp(unsigned mask = 0xffffffffu, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    ::emu::syncwarp(mask, file, line);
}

template <typename T>
inline T emu_shfl(unsigned mask, T v, int mode, int arg, int width, const char* file, int line) {
    static_assert(sizeof(T) <= 8, "shuffles move at most 8 bytes");
    unsigned long long bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    bits = ::emu::exchange(mask, bits, mode, arg, width, file, line);
    T r;
    std::memcpy(&r, &bits, sizeof(T));
    return r;
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32, const char* file = __builtin_FILE(),
                         int line = __builtin_LINE()) {
    return emu_shfl(mask, v, ::emu::SHFL_XOR, lane_mask, width, file, line);
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32, const char* file = __builtin_FILE(),
                          int line = __builtin_LINE()) {
    return emu_shfl(mask, v, ::emu::SHFL_DOWN, (int)delta, width, file, line);
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32, const char* file = __builtin_FILE(),
                        int line = __builtin_LINE()) {
    return emu_shfl(mask, v, ::emu::SHFL_UP, (int)delta, width, file, line);
}
template <typename T>
inline T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32, const char* file = __builtin_FILE(),
                     int line = __builtin_LINE()) {
    return emu_shfl(mask, v, ::emu::SHFL_IDX, src_lane, width, file, line);
}

// device intrinsics and math (the C and C++ math library provides expf, erf, fmaxf, ...)
inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline int __float_as_int(float f) { int i; std::memcpy(&i, &f, 4); return i; }
inline double __longlong_as_double(long long i) { double d; std::memcpy(&d, &i, 8); return d; }
inline long long __double_as_longlong(double d) { long long i; std::memcpy(&i, &d, 8); return i; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }

// ---------------------------------------------------------------- the launcher
namespace emu {
template <typename A>
bool check_arg(int i, long long size, int is_ptr, long long elem, char* err, int len) {
    char ty[256];
    type_name(typeid(A).name(), ty, sizeof ty);
    if constexpr (std::is_pointer_v<A>) {
        using E = std::remove_cv_t<std::remove_pointer_t<A>>;
        if (!is_ptr) {
            std::snprintf(err, len, "argument %d: the kernel takes a pointer (%s), got a %lld-byte value", i, ty, size);
            return false;
        }
        if (elem != 0 && elem != (long long)sizeof(E)) {
            std::snprintf(err, len, "argument %d: the kernel takes %s (%zu-byte elements), got an array of %lld-byte "
                          "elements", i, ty, sizeof(E), elem);
            return false;
        }
    } else if (is_ptr || size != (long long)sizeof(A)) {
        if (is_ptr)
            std::snprintf(err, len, "argument %d: the kernel takes a %s by value (%zu bytes), got an array", i, ty,
                          sizeof(A));
        else
            std::snprintf(err, len, "argument %d: the kernel takes a %s by value (%zu bytes), got %lld bytes", i, ty,
                          sizeof(A), size);
        return false;
    }
    return true;
}

template <typename A>
inline A load_arg(void* p) {
    A a;
    std::memcpy(&a, p, sizeof(A));
    return a;
}

template <typename... A>
struct Launch {
    void (*kernel)(A...);
    void** args;
    template <std::size_t... I>
    void call(std::index_sequence<I...>) { kernel(load_arg<std::decay_t<A>>(args[I])...); }
    static void thunk(void* self) { static_cast<Launch*>(self)->call(std::index_sequence_for<A...>{}); }
};

template <typename... A, std::size_t... I>
bool check_args(const long long* sizes, const int* is_ptr, const long long* elems, char* err, int len,
                std::index_sequence<I...>) {
    return (check_arg<A>((int)I, sizes[I], is_ptr[I], elems[I], err, len) && ...);
}

template <typename... A>
int launch(void (*kernel)(A...), const unsigned* grid, const unsigned* block, unsigned long long shared, void** args,
           const long long* sizes, const int* is_ptr, const long long* elems, int nargs, int reverse, char* err,
           int err_len) {
    if (nargs != (int)sizeof...(A)) {
        std::snprintf(err, err_len, "the kernel takes %d arguments, got %d", (int)sizeof...(A), nargs);
        return 1;
    }
    if (!check_args<A...>(sizes, is_ptr, elems, err, err_len, std::index_sequence_for<A...>{})) return 1;
    Launch<A...> l{kernel, args};
    return run_grid(grid, block, shared, reverse, &Launch<A...>::thunk, &l, err, err_len);
}
}  // namespace emu
