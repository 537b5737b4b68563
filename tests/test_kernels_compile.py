"""Compile check of the CUDA kernels without a GPU: NVRTC (NVIDIA's runtime compiler, a plain
library) compiles every kernel file, with every template instantiation the host launches, for
sm_80 and sm_90 (to cubins, so ptxas runs too: register spills and shared-memory limits are
checked), with the options cupy uses. Any error or warning fails, and the message names the
file, the line and the kernel.

Needs the NVRTC library: `pip install -e ".[kernels-check]"` (the nvidia-cuda-nvrtc wheel);
skipped with that reason where it is absent. Results are cached per source, options and NVRTC
version under the temp dir, so a second run on the same sources is instant."""
import hashlib
import json
import tempfile
from pathlib import Path

import pytest

from tinygrad_lm import kernels as K
from tinygrad_lm.kernels import nvrtc

ARCHS = ("sm_80", "sm_90")
pytestmark = pytest.mark.skipif(nvrtc.find_library() is None,
                                reason="no NVRTC library: pip install -e \".[kernels-check]\" (nvidia-cuda-nvrtc)")


@pytest.fixture(scope="module")
def results():
    """(file, arch) -> result, compiled two at a time (cached by content)."""
    version = ".".join(map(str, nvrtc.version()))
    cache = Path(tempfile.gettempdir()) / "tinygrad_lm_nvrtc_check"
    cache.mkdir(exist_ok=True)
    out, todo = {}, []
    for arch in ARCHS:
        for file in K.SOURCES:
            key = hashlib.sha256("\0".join([version, arch, " ".join(nvrtc.CHECK_OPTIONS), file, K.load_source(file),
                                            *K.SOURCES[file]]).encode()).hexdigest()[:24]
            path = cache / f"{key}.json"
            if path.exists():
                out[(file, arch)] = json.loads(path.read_text())
            else:
                todo.append(((file, arch), path))
    for (job, path), r in zip(todo, nvrtc.compile_many([j for j, _ in todo], workers=2)):
        out[job] = res = {"clean": r.clean, "report": r.report(), "lowered": r.lowered}
        if r.clean:
            path.write_text(json.dumps(res))
    return out


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("file", list(K.SOURCES))
def test_kernel_file_compiles_cleanly(results, file, arch):
    r = results[(file, arch)]
    assert r["clean"], r["report"]
    assert sorted(r["lowered"]) == sorted(K.SOURCES[file])


def test_nvrtc_reports_errors_with_file_line_and_kernel(tmp_path, monkeypatch):
    """The check can fail: a broken copy of a kernel file is reported with its name and line."""
    src = (K.DIR / "gelu.cu").read_text().replace("y[i] = x[i] * phi;", "y[i] = x[i] * phi + undeclared;")
    broken = K.DIR / "_broken_check.cu"
    monkeypatch.setitem(K.SOURCES, broken.name, ("gelu_fwd<float>",))
    broken.write_text(src)
    try:
        r = nvrtc.compile_file(broken.name, "sm_80")
    finally:
        broken.unlink()
    assert not r.ok and not r.clean
    line = next(i for i, t in enumerate(src.splitlines(), 1) if "undeclared" in t)
    assert f"_broken_check.cu({line}): error" in r.log and "undeclared" in r.log
    assert "[in kernel gelu_fwd]" in r.log
