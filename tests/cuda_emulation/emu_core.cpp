// The scheduler of the CPU emulation (see emu.h): fibers for a block's threads, barriers,
// warp exchanges, dynamic shared memory. One block at a time, on the calling OS thread.
#include "emu.h"

#include <cxxabi.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace emu {
Ctx ctx;

void type_name(const char* mangled, char* out, int len) {
    int status = 0;
    char* s = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
    std::snprintf(out, len, "%s", status == 0 && s ? s : mangled);
    std::free(s);
}

// ---------------------------------------------------------------- context switching
#if defined(__x86_64__)
// emu_switch(&save, next): push the callee-saved registers and the SSE/x87 control words,
// store the stack pointer in *save, load `next` and pop the same from there. A new fiber's
// stack is prepared so that this "returns" into fiber_entry.
extern "C" void emu_switch(void** save, void* next);
asm(R"(
    .text
    .globl emu_switch
    .type emu_switch, @function
emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_switch, .-emu_switch
)");
#endif

enum { RUNNABLE = 0, AT_BLOCK = 1, AT_WARP = 2, DONE = 3 };

struct Thread {
    void* sp = nullptr;
    int state = DONE;
    uint3 idx{0, 0, 0};
    const char* file = "";
    int line = 0;
#if !defined(__x86_64__)
    ucontext_t uc;
#endif
};

static const size_t STACK = 256 * 1024;        // per fiber; the lowest page is a guard page
static const size_t MAX_THREADS = 1024;
static char* stacks = nullptr;
static size_t page = 4096;

static std::vector<Thread> th;
static int nthreads = 0, cur = -1, alive = 0, at_block = 0, nwarps = 0;
static std::vector<int> warp_lanes, warp_arrived;
static std::vector<unsigned long long> xchg;   // two buffers of 32 slots per warp, used in turn
static std::vector<int> xchg_parity;
static void* sched_sp = nullptr;
#if !defined(__x86_64__)
static ucontext_t sched_uc;
#endif
static void (*thunk)(void*) = nullptr;
static void* thunk_data = nullptr;
static std::string error;
static std::vector<unsigned char> dyn;
static size_t dyn_bytes = 0;
static const size_t CANARY = 64;
static std::mutex launch_mutex;

static int reverse_order = 0;

// The next thread to run after `from`, or -1. Its own warp first (the next runnable lane
// after it, round robin, itself last), then the other warps in order: a warp runs as far as
// it can (through its shuffles) before another warp gets a turn, as a GPU may let one warp run
// ahead of the others. That is what exposes a missing __syncthreads between a block's warps
// (a warp overwriting shared memory that another has not read yet).
static int next_runnable(int from) {
    const int w = from / 32, lane = from % 32;
    const int lanes = warp_lanes[w];
    for (int k = 1; k <= lanes; ++k) {
        const int l = reverse_order ? ((lane - k) % lanes + lanes) % lanes : (lane + k) % lanes;
        if (th[w * 32 + l].state == RUNNABLE) return w * 32 + l;
    }
    for (int kw = 1; kw < nwarps; ++kw) {
        const int w2 = reverse_order ? ((w - kw) % nwarps + nwarps) % nwarps : (w + kw) % nwarps;
        for (int k = 0; k < warp_lanes[w2]; ++k) {
            const int i = w2 * 32 + (reverse_order ? warp_lanes[w2] - 1 - k : k);
            if (th[i].state == RUNNABLE) return i;
        }
    }
    return -1;
}

// The running fiber gives way: straight to the next runnable thread (no trip through the
// scheduler), or to the scheduler when none is left (the block is done, deadlocked or failed).
static void yield_to_scheduler() {
    const int me = cur;
    const int j = error.empty() ? next_runnable(me) : -1;
    if (j == me) return;
    if (j < 0) {
#if defined(__x86_64__)
        emu_switch(&th[me].sp, sched_sp);
#else
        swapcontext(&th[me].uc, &sched_uc);
#endif
        return;
    }
    cur = j;
    ctx.tidx = th[j].idx;
#if defined(__x86_64__)
    emu_switch(&th[me].sp, th[j].sp);
#else
    swapcontext(&th[me].uc, &th[j].uc);
#endif
}

static void fiber_entry() {
    thunk(thunk_data);
    th[cur].state = DONE;
    --alive;
    yield_to_scheduler();
    std::abort();   // a finished fiber is never resumed
}

static void resume(int i) {
    cur = i;
    ctx.tidx = th[i].idx;
#if defined(__x86_64__)
    emu_switch(&sched_sp, th[i].sp);
#else
    swapcontext(&sched_uc, &th[i].uc);
#endif
}

static void fail_with(const std::string& msg);

[[noreturn]] void fail(const char* msg) {
    fail_with(msg);
    std::abort();
}

static void fail_with(const std::string& msg) {
    if (error.empty()) {
        char where[160];
        std::snprintf(where, sizeof where, " (block (%u, %u, %u), thread (%u, %u, %u))", ctx.bidx.x, ctx.bidx.y,
                      ctx.bidx.z, ctx.tidx.x, ctx.tidx.y, ctx.tidx.z);
        error = msg + where;
    }
    th[cur].state = DONE;
    --alive;
    yield_to_scheduler();
    std::abort();
}

static std::string site(const Thread& t) { return std::string(t.file) + ":" + std::to_string(t.line); }

void syncthreads(const char* file, int line) {
    Thread& t = th[cur];
    t.state = AT_BLOCK;
    t.file = file;
    t.line = line;
    if (++at_block == nthreads) {
        for (int j = 0; j < nthreads; ++j)
            if (th[j].line != line || std::strcmp(th[j].file, file) != 0)
                fail_with("divergent __syncthreads: thread " + std::to_string(j) + " waits at " + site(th[j]) +
                     ", others at " + site(t));
        for (int j = 0; j < nthreads; ++j) th[j].state = RUNNABLE;
        at_block = 0;
    }
    yield_to_scheduler();
}

static void warp_barrier(const char* file, int line) {
    Thread& t = th[cur];
    const int w = cur / 32;
    t.state = AT_WARP;
    t.file = file;
    t.line = line;
    if (++warp_arrived[w] == warp_lanes[w]) {
        for (int j = w * 32; j < w * 32 + warp_lanes[w]; ++j)
            if (th[j].line != line || std::strcmp(th[j].file, file) != 0)
                fail_with("divergent warp operation: lane " + std::to_string(j % 32) + " at " + site(th[j]) +
                     ", others at " + site(t));
        for (int j = w * 32; j < w * 32 + warp_lanes[w]; ++j) th[j].state = RUNNABLE;
        warp_arrived[w] = 0;
    }
    yield_to_scheduler();
}

static unsigned full_mask(int w) { return warp_lanes[w] == 32 ? 0xffffffffu : ((1u << warp_lanes[w]) - 1u); }

void syncwarp(unsigned mask, const char* file, int line) {
    const int w = cur / 32;
    if (mask != full_mask(w)) fail("__syncwarp with a partial mask is not emulated");
    warp_barrier(file, line);
}

unsigned long long exchange(unsigned mask, unsigned long long bits, int mode, int arg, int width, const char* file,
                            int line) {
    const int w = cur / 32, lane = cur % 32;
    char buf[200];
    if (mask != full_mask(w)) {
        std::snprintf(buf, sizeof buf, "shuffle at %s:%d with mask 0x%x: only the full mask of the warp's lanes "
                      "(0x%x) is emulated", file, line, mask, full_mask(w));
        fail(buf);
    }
    if (width != 32) fail("shuffle with width != 32 is not emulated");
    // A lane writes its slot in this shuffle's buffer, waits for the warp, reads its source's slot.
    // The next shuffle uses the other buffer, so no second barrier is needed before this one can
    // be reused: a lane reaches the shuffle after next only once every lane has passed the next
    // one's barrier, i.e. has finished reading this one.
    const int parity = xchg_parity[cur];
    xchg_parity[cur] ^= 1;
    unsigned long long* slots = &xchg[((size_t)w * 2 + parity) * 32];
    slots[lane] = bits;
    warp_barrier(file, line);
    int src = mode == SHFL_XOR ? lane ^ arg : mode == SHFL_DOWN ? lane + arg : mode == SHFL_UP ? lane - arg : arg & 31;
    unsigned long long r = bits;                     // out of range for down/up: the lane keeps its value
    if (!((mode == SHFL_DOWN && src >= 32) || (mode == SHFL_UP && src < 0))) {
        if (src >= warp_lanes[w]) {
            std::snprintf(buf, sizeof buf, "shuffle at %s:%d reads lane %d of a warp of %d lanes", file, line, src,
                          warp_lanes[w]);
            fail(buf);
        }
        r = slots[src];
    }
    return r;
}

void* dynamic_shared() { return dyn.data(); }

static void ensure_stacks() {
    if (stacks) return;
    page = (size_t)sysconf(_SC_PAGESIZE);
    void* p = mmap(nullptr, STACK * MAX_THREADS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED) std::abort();
    stacks = (char*)p;
    for (size_t i = 0; i < MAX_THREADS; ++i) mprotect(stacks + i * STACK, page, PROT_NONE);   // overflow -> SIGSEGV
}

static void prepare(int i) {
    char* top = stacks + (size_t)(i + 1) * STACK;     // 16-byte aligned
#if defined(__x86_64__)
    // frame popped by emu_switch: control words, r15, r14, r13, r12, rbx, rbp, return address.
    // After its `ret` the stack pointer is top - 8, as on entry to a called function.
    void** sp = (void**)(top - 72);
    unsigned int mxcsr;
    unsigned short fpucw;
    asm volatile("stmxcsr %0" : "=m"(mxcsr));
    asm volatile("fnstcw %0" : "=m"(fpucw));
    std::memcpy((char*)sp, &mxcsr, 4);
    std::memcpy((char*)sp + 4, &fpucw, 2);
    for (int k = 1; k <= 6; ++k) sp[k] = nullptr;
    sp[7] = (void*)&fiber_entry;
    th[i].sp = sp;
#else
    getcontext(&th[i].uc);
    th[i].uc.uc_stack.ss_sp = stacks + (size_t)i * STACK + page;
    th[i].uc.uc_stack.ss_size = STACK - page;
    th[i].uc.uc_link = nullptr;
    makecontext(&th[i].uc, (void (*)())fiber_entry, 0);
#endif
}

static std::string describe_deadlock() {
    int done = 0, at_b = 0, at_w = 0;
    const Thread* b = nullptr;
    const Thread* w = nullptr;
    for (const Thread& t : th) {
        if (t.state == DONE) ++done;
        if (t.state == AT_BLOCK) { ++at_b; b = &t; }
        if (t.state == AT_WARP) { ++at_w; w = &t; }
    }
    if (b) return "__syncthreads at " + site(*b) + " reached by " + std::to_string(at_b) + " of " +
               std::to_string(nthreads) + " threads; " + std::to_string(done) + " had returned (a barrier after an "
               "early return, or inside a branch not every thread takes)";
    if (w) return "warp operation at " + site(*w) + " waits for lanes that have returned or are elsewhere";
    return "deadlock";
}

static int run_block() {
    for (int i = 0; i < nthreads; ++i) {
        th[i].state = RUNNABLE;
        th[i].file = "";
        th[i].line = 0;
        prepare(i);
    }
    alive = nthreads;
    at_block = 0;
    std::fill(warp_arrived.begin(), warp_arrived.end(), 0);
    std::fill(xchg_parity.begin(), xchg_parity.end(), 0);
    if (dyn_bytes) std::memset(dyn.data(), 0xFF, dyn_bytes);
    // the first thread: 0, or the last one in reverse order
    int first = reverse_order ? nthreads - 1 : 0;
    if (th[first].state != RUNNABLE) first = next_runnable(first);
    resume(first);           // fibers hand over to each other; back here when none can run
    if (!error.empty()) return 1;
    if (alive > 0) {
        error = describe_deadlock();
        return 1;
    }
    for (size_t k = 0; k < CANARY; ++k)
        if (dyn[dyn_bytes + k] != 0xA5) {
            error = "dynamic shared memory written past its end (" + std::to_string(dyn_bytes) + " bytes)";
            return 1;
        }
    return 0;
}

static int run_grid_impl(const unsigned* grid, const unsigned* block, unsigned long long shared, int reverse,
                         std::string& err);

int run_grid(const unsigned* grid, const unsigned* block, unsigned long long shared, int reverse,
             void (*body)(void*), void* data, char* err_out, int err_len) {
    std::lock_guard<std::mutex> lock(launch_mutex);
    thunk = body;
    thunk_data = data;
    std::string err;
    const int rc = run_grid_impl(grid, block, shared, reverse, err);
    if (rc) std::snprintf(err_out, err_len, "%s", err.c_str());
    return rc;
}

static int run_grid_impl(const unsigned* grid, const unsigned* block, unsigned long long shared, int reverse,
                         std::string& err) {
    const unsigned long long n = (unsigned long long)block[0] * block[1] * block[2];
    char buf[200];
    if (n == 0 || n > MAX_THREADS || block[0] > 1024 || block[1] > 1024 || block[2] > 64) {
        std::snprintf(buf, sizeof buf, "invalid block (%u, %u, %u): at most 1024 threads", block[0], block[1], block[2]);
        err = buf;
        return 1;
    }
    if (grid[0] == 0 || grid[1] == 0 || grid[2] == 0 || grid[0] > 2147483647u || grid[1] > 65535 || grid[2] > 65535) {
        std::snprintf(buf, sizeof buf, "invalid grid (%u, %u, %u)", grid[0], grid[1], grid[2]);
        err = buf;
        return 1;
    }
    if (shared > 227 * 1024) {
        err = "dynamic shared memory of " + std::to_string(shared) + " bytes exceeds the 227 KB of an sm_90 block";
        return 1;
    }
    ensure_stacks();
    reverse_order = reverse;
    nthreads = (int)n;
    th.assign(nthreads, Thread());
    for (int i = 0; i < nthreads; ++i)
        th[i].idx = uint3{(unsigned)i % block[0], ((unsigned)i / block[0]) % block[1], (unsigned)i / (block[0] * block[1])};
    nwarps = (nthreads + 31) / 32;
    warp_lanes.assign(nwarps, 32);
    if (nthreads % 32) warp_lanes[nwarps - 1] = nthreads % 32;
    warp_arrived.assign(nwarps, 0);
    xchg.assign((size_t)nwarps * 64, 0);
    xchg_parity.assign(nthreads, 0);
    dyn_bytes = shared;
    dyn.assign(dyn_bytes + CANARY, 0xA5);
    error.clear();
    ctx.bdim = uint3{block[0], block[1], block[2]};
    ctx.gdim = uint3{grid[0], grid[1], grid[2]};
    const unsigned long long nblocks = (unsigned long long)grid[0] * grid[1] * grid[2];
    for (unsigned long long k = 0; k < nblocks; ++k) {
        const unsigned long long b = reverse ? nblocks - 1 - k : k;
        ctx.bidx = uint3{(unsigned)(b % grid[0]), (unsigned)((b / grid[0]) % grid[1]), (unsigned)(b / ((unsigned long long)grid[0] * grid[1]))};
        if (run_block()) {
            err = error;
            return 1;
        }
    }
    return 0;
}
}  // namespace emu
