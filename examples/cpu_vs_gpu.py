"""One GPT training step on the CPU (numpy) and on an NVIDIA GPU (cupy): same code, two backends.

Every op in tinygrad_lm asks `tinygrad_lm.backend` for the array module of its inputs, so
moving the model and the batch to "cuda" runs the very same forward, backward and AdamW
step on cupy arrays. We time steps of nanoGPT's CPU configuration (4 layers, 4 heads,
128 dims, block 64, batch 12) on both and check that both backends compute the same loss
from the same weights.

Without cupy or a GPU the GPU half is skipped with a message.

Run:  python examples/cpu_vs_gpu.py [--steps 10] [--n-layer 4 --n-embd 128 --block-size 64 --batch-size 12]
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import tinygrad_lm
from tinygrad_lm import Tensor, backend, manual_seed
from tinygrad_lm.data import CharTokenizer, builtin_corpus, get_batch
from tinygrad_lm.models.gpt import GPT, GPTConfig
from tinygrad_lm.optim import clip_grad_norm_


def _sync(device):
    if device != "cpu":
        backend.xp_for(device).cuda.Device(int(device.split(":")[1])).synchronize()


def time_steps(device, ids, vocab, args):
    """(first-step loss, seconds per step over args.steps timed steps after args.warmup)."""
    manual_seed(args.seed)  # the same initial weights on every device (drawn on the CPU, then moved)
    model = GPT(GPTConfig(vocab_size=vocab, block_size=args.block_size, n_layer=args.n_layer, n_head=args.n_head,
                          n_embd=args.n_embd, dropout=0.0, bias=False))
    if device != "cpu":
        model.to(device)
    opt = model.configure_optimizers(weight_decay=0.1, learning_rate=1e-3, betas=(0.9, 0.99))
    rng = np.random.default_rng(args.seed)
    batches = [get_batch(ids, args.batch_size, args.block_size, rng) for _ in range(args.warmup + args.steps)]
    first = None
    t0 = None
    for i, (x, y) in enumerate(batches):
        if i == args.warmup:
            _sync(device)
            t0 = time.perf_counter()
        _, loss = model(Tensor(x, device=device), Tensor(y, device=device))
        loss.backward()
        clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        lossf = loss.item()  # reading the loss waits for the GPU, as a training loop's logging does
        if first is None:
            first = lossf
    _sync(device)
    return first, (time.perf_counter() - t0) / max(args.steps, 1)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10, help="timed steps per device")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first (cupy compiles its kernels then)")
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--n-embd", type=int, default=128)
    ap.add_argument("--block-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.warmup < 1 or args.steps < 1:
        ap.error("--warmup and --steps must be >= 1")

    text = builtin_corpus()[:200_000]
    tok = CharTokenizer.from_text(text)
    ids = tok.encode_array(text)
    tokens = args.batch_size * args.block_size
    print(f"GPT: {args.n_layer} layers, {args.n_head} heads, {args.n_embd} dims, block {args.block_size}, "
          f"batch {args.batch_size} ({tokens} tokens per step), float32; {args.steps} timed steps after {args.warmup} warm-up\n")
    out = {"tokens_per_step": tokens}
    loss_cpu, s_cpu = time_steps("cpu", ids, tok.vocab_size, args)
    print(f"  cpu  (numpy): {1e3 * s_cpu:9.1f} ms/step  {tokens / s_cpu:>10,.0f} tokens/s   first loss {loss_cpu:.5f}")
    out.update(cpu_ms=1e3 * s_cpu, cpu_loss=loss_cpu, gpu_ms=None, gpu_loss=None, speedup=None)
    failed = []
    if not tinygrad_lm.cuda_available():
        print("  cuda (cupy):  skipped: no usable GPU (" + backend.INSTALL_HINT.split(":")[0] + " to use one)")
        out["skipped"] = True
    else:
        loss_gpu, s_gpu = time_steps("cuda:0", ids, tok.vocab_size, args)
        print(f"  cuda (cupy):  {1e3 * s_gpu:9.1f} ms/step  {tokens / s_gpu:>10,.0f} tokens/s   first loss {loss_gpu:.5f}")
        print(f"\n  the GPU step is {s_cpu / s_gpu:.1f}x faster. With a model this small much of a GPU step is")
        print("  Python and kernel-launch overhead; larger models (--n-embd 384 --block-size 256) gain more.")
        out.update(gpu_ms=1e3 * s_gpu, gpu_loss=loss_gpu, speedup=s_cpu / s_gpu, skipped=False)
        if not abs(loss_gpu - loss_cpu) < 1e-3 * max(1.0, abs(loss_cpu)):
            failed.append("the two backends disagree on the first loss")
        print(f"  both backends start from the same weights and batch: first losses differ by {abs(loss_gpu - loss_cpu):.2e}")
    print("\nchecks: " + ("all passed" if not failed else "FAILED: " + ", ".join(failed)))
    out["failed"] = failed
    return out


if __name__ == "__main__":
    sys.exit(1 if main()["failed"] else 0)
