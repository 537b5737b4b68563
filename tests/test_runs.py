"""runs.py's loop and divergence check, on their own: when StepLoop reads the steps' rows
(before every evaluation, save and exit, and every read_every steps), and Divergence's rows,
flag and message. (The whole runs are in test_train.py, test_dpo.py and the fault suite.)"""
import numpy as np
import pytest

from tinygrad_lm.runs import Divergence, StepLoop, StepMonitor, TrainingDiverged, read_interval


def _loop(read_every, max_iters=7, eval_interval=5, start=0, stop_after=None):
    events = []
    stopped = None if stop_after is None else (lambda: "SIGTERM" if len(
        [e for e in events if e[0] == "step"]) >= stop_after else None)
    loop = StepLoop(start, max_iters, eval_interval).run(
        evaluate=lambda it: events.append(("eval", it)), step=lambda it: events.append(("step", it)),
        save=lambda it: events.append(("save", it)), out_dir="out", log=lambda *a: None, stopped=stopped,
        read=lambda: events.append(("read",)), read_every=read_every)
    return loop, events


def test_the_loop_reads_before_every_evaluation_and_every_read_every_steps():
    loop, events = _loop(read_every=3)
    assert events == [("read",), ("eval", 0),
                      ("step", 0), ("step", 1), ("step", 2), ("read",), ("step", 3), ("step", 4),
                      ("read",), ("eval", 5), ("save", 5),
                      ("step", 5), ("read",), ("step", 6),
                      ("read",), ("eval", 7), ("save", 7)]
    assert loop.it == 7 and loop.steps_done == 7 and loop.interrupted is None


def test_the_loop_reads_before_it_stops_on_a_signal_and_saves():
    loop, events = _loop(read_every=10, max_iters=50, eval_interval=100, stop_after=4)
    assert events[-3:] == [("step", 3), ("read",), ("save", 4)] and loop.interrupted == "SIGTERM"
    assert events.count(("read",)) == 2       # before the step-0 evaluation, and before stopping


def test_every_step_is_read_on_the_cpu_and_every_ten_elsewhere():
    assert read_interval("cpu") == 1 and read_interval("cuda:0") == 10
    _, events = _loop(read_every=1, max_iters=3, eval_interval=100)
    assert [e[0] for e in events] == ["read", "eval", "step", "read", "step", "read", "step", "read", "read", "eval",
                                      "save"]


class _Model:
    def __init__(self, w):
        self.w = w

    def parameters(self):
        from tinygrad_lm import Tensor
        return [Tensor(self.w)]


def test_divergence_keeps_every_row_and_names_the_first_non_finite_step():
    guard = Divergence(_Model(np.ones(3)), "run", lambda step, lr: [f"--lr {lr:g}"], last_saved=4)
    flags = [guard.check(s, np.float32(v), np.float64(n), 0.5, margin=np.float64(s)) for s, v, n in
             [(5, 2.0, 1.0), (6, np.nan, 1.0), (7, 1.0, np.inf), (8, 1.0, 1.0)]]
    assert [bool(f) for f in flags] == [False, True, True, True]     # sticky: every step after the first bad one
    with pytest.raises(TrainingDiverged, match=r"^training diverged at step 6: the loss is nan; nothing after step 4 "
                                               r"was saved \(the checkpoint in run is still step 4's\)\. Plausible "
                                               r"causes: --lr 0\.5$"):
        guard.flush()
    assert guard.flush() == [] and guard.pending == []              # read once: the rows are gone


def test_divergence_flush_returns_the_rows_with_their_steps():
    guard = Divergence(_Model(np.ones(3)), "run", lambda step, lr: [], what="dpo")
    guard.check(0, np.float64(0.7), None, 1e-3, margin=0.0, accuracy=0.5)     # no clipping: no norm column
    guard.check(1, np.float64(0.6), None, 2e-3, margin=0.25, accuracy=1.0)
    assert guard.flush() == [{"step": 0, "lr": 1e-3, "loss": 0.7, "grad_norm": None, "margin": 0.0, "accuracy": 0.5},
                             {"step": 1, "lr": 2e-3, "loss": 0.6, "grad_norm": None, "margin": 0.25, "accuracy": 1.0}]
    guard.check(2, np.float64(0.5), np.float64(np.nan), 3e-3, margin=0.5, accuracy=1.0)
    with pytest.raises(TrainingDiverged, match=r"^dpo diverged at step 2: the gradient norm is nan \(the loss was "
                                               r"0\.5\); no checkpoint was written"):
        guard.flush()


def test_a_monitor_of_the_cpu_returns_a_host_flag_the_optimizer_can_read():
    m = StepMonitor()
    assert m(np.float32(1.0), None) is np.False_ and m(np.float32(np.inf), None) is np.True_
    assert m(np.float32(1.0), None) is np.True_
    assert m.read().shape == (3, 1) and m.read().shape == (0, 2)
