"""The cupy glue of the kernels (tinygrad_lm.kernels.CupyRuntime) against a recording fake of the
cupy calls it makes, with cupy's documented signatures: RawModule(code=, options=,
name_expressions=), get_function(name), kernel(grid, block, args, shared_mem=), the
max_dynamic_shared_size_bytes attribute, Device().attributes. This checks the glue's bookkeeping
(one module per device and file, the opt-in above 48 KB, by-value structs unwrapped), not cupy."""
import numpy as np

from tinygrad_lm import kernels as K


class FakeKernel:
    def __init__(self, name):
        self.name, self.calls, self.max_dynamic_shared_size_bytes = name, [], 0

    def __call__(self, grid, block, args, *, shared_mem=0):
        self.calls.append((grid, block, args, shared_mem, self.max_dynamic_shared_size_bytes))


class FakeCupy:
    class ndarray:
        pass

    def __init__(self):
        self.modules, self.device_id = [], 0
        fake = self

        class RawModule:
            def __init__(self, *, code=None, options=(), name_expressions=None):
                self.code, self.options, self.names, self.kernels = code, options, tuple(name_expressions), {}
                fake.modules.append(self)

            def get_function(self, name):
                assert name in self.names, f"{name} was not declared as a name expression"
                return self.kernels.setdefault(name, FakeKernel(name))

        class Device:
            def __init__(self, i=None):
                self.id = fake.device_id
                self.attributes = {"MultiProcessorCount": 132, "MaxSharedMemoryPerBlockOptin": 232448}

        self.RawModule = RawModule
        self.cuda = type("cuda", (), {"Device": Device})


def test_cupy_runtime_compiles_each_file_once_per_device_and_launches_as_cupy_expects():
    cp = FakeCupy()
    rt = K.CupyRuntime(cp)
    f1 = rt.function("softmax.cu", "softmax_fwd<float>")
    assert rt.function("softmax.cu", "softmax_fwd<float>") is f1
    rt.function("softmax.cu", "softmax_bwd<double>")
    assert len(cp.modules) == 1
    mod = cp.modules[0]
    assert mod.code == K.load_source("softmax.cu") and mod.names == K.SOURCES["softmax.cu"]
    assert "--std=c++17" in mod.options and not any(o.startswith(("-arch", "--gpu-architecture")) for o in mod.options)
    cp.device_id = 1
    rt.function("softmax.cu", "softmax_fwd<float>")
    assert len(cp.modules) == 2                                    # a module per device

    struct = K.ByValue(np.zeros(1, dtype=[("a", "<i8")]))
    rt.launch(f1, (3,), (128,), (None, np.int32(5), struct), 0)
    grid, block, args, shared, optin = f1.calls[-1]
    assert (grid, block, shared, optin) == ((3,), (128,), 0, 0)
    assert args[0] is None and args[2] is struct.array           # by-value structs go as size-1 numpy arrays
    rt.launch(f1, (1,), (128,), (), 66048)
    assert f1.calls[-1][3:] == (66048, 66048)                       # opted in above 48 KB before the launch
    assert rt.sm_count() == 132 and rt.max_shared() == 232448
