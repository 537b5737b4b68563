"""Convergence check: the same GPT trained by tinygrad_lm and by PyTorch, step for step.

Both models start from the same weights (ours are copied into the PyTorch model by their
nanoGPT names), see the same batches (one seeded numpy generator, as `tinygrad-lm train`
draws them), and use the same recipe: AdamW with nanoGPT's weight-decay groups, nanoGPT's
warmup + cosine learning rate, global gradient-norm clipping. Each step runs once in each
engine, so any difference in the loss curves is a difference in the arithmetic, not in
the data, the initialisation or the schedule.

It prints, at every evaluation, both engines' train/val loss (the same fixed evaluation
batches for both, like `tinygrad-lm train`), the largest gap between their per-step
training losses so far, and at the end the loss over the *whole* validation split (every
token scored once), which has no sampling noise, plus the time each engine spent in its
training steps.

    pip install torch==2.13.0                          # the PyTorch side (CPU wheel is enough)
    python benchmarks/convergence.py --data ../shared/data/tinyshakespeare.txt          # cpu preset
    python benchmarks/convergence.py --data ../shared/data/tinyshakespeare.txt --seed 1 --csv c.csv
    python benchmarks/convergence.py --steps 200 --eval-interval 50                     # built-in corpus, quick

`--gelu none` trains both with the exact (erf) GELU, as nanoGPT does; the default is the
tanh approximation, which is tinygrad_lm's GPT default.

The times it prints are indicative only: both engines run in one process and their thread
pools compete for the same cores. Time the step with `tinygrad-lm bench --what model`.
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from tinygrad_lm import Tensor, manual_seed, no_grad  # noqa: E402
from tinygrad_lm.bench.harness import tune_allocator  # noqa: E402
from tinygrad_lm.checkpoint import build_model, model_arrays  # noqa: E402
from tinygrad_lm.data import build_tokenizer, encode_splits, get_batch, load_corpus  # noqa: E402
from tinygrad_lm.evaluate import evaluate_split  # noqa: E402
from tinygrad_lm.train import PRESETS, TrainConfig, lr_at, train_step  # noqa: E402


def torch_side(model, cfg, gelu):
    import torch
    from tinygrad_lm.bench import torch_reference as tr
    tcfg = tr.TorchGPTConfig(model.config.vocab_size, cfg.block_size, cfg.n_layer, cfg.n_head, cfg.n_embd,
                             cfg.dropout, cfg.bias)
    tm = tr.TorchGPT(tcfg, gelu=gelu)
    tm.load_arrays(model_arrays(model))
    topt = tm.configure_optimizers(cfg.weight_decay, cfg.lr, (cfg.beta1, cfg.beta2))
    return torch, tr, tm, topt


def eval_batches(data, cfg, seed):
    rng = np.random.default_rng(seed)
    return [get_batch(data, cfg.batch_size, cfg.block_size, rng) for _ in range(cfg.eval_iters)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="a UTF-8 text file (default: the built-in corpus)")
    ap.add_argument("--preset", default="cpu", choices=list(PRESETS))
    ap.add_argument("--steps", type=int, default=None, help="training steps (default: the preset's max_iters)")
    ap.add_argument("--eval-interval", type=int, default=None)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--gelu", choices=["tanh", "none"], default="tanh")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    ap.add_argument("--csv", default=None, help="write every step's losses (ours, torch) to this file")
    a = ap.parse_args(argv)
    tune_allocator()  # as the tinygrad-lm CLI does

    cfg = TrainConfig(**PRESETS[a.preset])
    cfg.seed = a.seed
    if a.steps is not None:
        cfg.max_iters = cfg.lr_decay_iters = a.steps
    if a.eval_interval is not None:
        cfg.eval_interval = a.eval_interval
    text, name = load_corpus(a.data)
    tok = build_tokenizer("char", text)
    train_ids, val_ids = encode_splits(text, tok, cfg.block_size)
    manual_seed(cfg.seed)
    model = build_model(dict(vocab_size=tok.vocab_size, n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd,
                             block_size=cfg.block_size, dropout=cfg.dropout, bias=cfg.bias, gelu_approximate=a.gelu))
    opt = model.configure_optimizers(cfg.weight_decay, cfg.lr, (cfg.beta1, cfg.beta2))
    torch, tr, tm, topt = torch_side(model, cfg, a.gelu)
    if a.threads:
        torch.set_num_threads(a.threads)
    print(f"corpus {name}: {len(train_ids):,} train / {len(val_ids):,} val tokens; preset {a.preset}, "
          f"{cfg.max_iters} steps, seed {cfg.seed}, gelu {a.gelu}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads", flush=True)

    evals = {"train": eval_batches(train_ids, cfg, cfg.seed + 1), "val": eval_batches(val_ids, cfg, cfg.seed + 2)}

    @no_grad()
    def ours_eval(batches):
        model.eval()
        out = float(np.mean([float(model(Tensor(x), Tensor(y))[1].data) for x, y in batches]))
        model.train()
        return out

    def torch_eval(batches):
        tm.eval()
        with torch.no_grad():
            out = float(np.mean([tm(torch.from_numpy(x), torch.from_numpy(y))[1].item() for x, y in batches]))
        tm.train()
        return out

    rng = np.random.default_rng(cfg.seed)
    rows, worst, t_ours, t_torch = [], 0.0, 0.0, 0.0
    best = {"ours": math.inf, "torch": math.inf}
    model.train()
    tm.train()
    for it in range(cfg.max_iters + 1):
        if it % cfg.eval_interval == 0 or it == cfg.max_iters:
            o = {k: ours_eval(b) for k, b in evals.items()}
            t = {k: torch_eval(b) for k, b in evals.items()}
            best["ours"], best["torch"] = min(best["ours"], o["val"]), min(best["torch"], t["val"])
            print(f"step {it:5d}: ours train {o['train']:.4f} val {o['val']:.4f} | torch train {t['train']:.4f} "
                  f"val {t['val']:.4f} | max |loss gap| so far {worst:.2e}", flush=True)
        if it == cfg.max_iters:
            break
        lr = lr_at(it, cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        for g in topt.param_groups:
            g["lr"] = lr
        x, y = get_batch(train_ids, cfg.batch_size, cfg.block_size, rng)
        t0 = time.perf_counter()
        lo = float(train_step(model, opt, Tensor(x), Tensor(y), cfg.grad_clip).data)
        t1 = time.perf_counter()
        lt = tr.train_step(tm, topt, torch.from_numpy(x), torch.from_numpy(y), cfg.grad_clip)
        t2 = time.perf_counter()
        t_ours += t1 - t0
        t_torch += t2 - t1
        worst = max(worst, abs(lo - lt))
        rows.append((it, lr, lo, lt))

    full_ours = evaluate_split(model, val_ids, cfg.batch_size, "cpu")["loss"]
    tm.eval()
    with torch.no_grad():
        from tinygrad_lm.data import iter_eval_batches
        tot, cnt = 0.0, 0
        for x, y in iter_eval_batches(val_ids, cfg.batch_size, cfg.block_size):
            tot += tm(torch.from_numpy(x), torch.from_numpy(y))[1].item() * y.size
            cnt += y.size
    full_torch = tot / cnt
    tokens = cfg.max_iters * cfg.batch_size * cfg.block_size
    print(f"best val loss (eval batches): ours {best['ours']:.4f}, torch {best['torch']:.4f}")
    print(f"whole val split ({cnt:,} tokens): ours {full_ours:.4f}, torch {full_torch:.4f}")
    print(f"largest per-step training-loss gap: {worst:.2e}; final-step losses ours {rows[-1][2]:.4f}, "
          f"torch {rows[-1][3]:.4f}")
    print(f"training steps: ours {t_ours:.1f} s ({tokens / t_ours:,.0f} tok/s), torch {t_torch:.1f} s "
          f"({tokens / t_torch:,.0f} tok/s); ours / torch = {t_ours / t_torch:.2f}")
    if a.csv:
        with open(a.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["step", "lr", "loss_ours", "loss_torch"])
            w.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
