"""Accelerator facts: bfloat16 dense peaks (-> MFU, in the benchmark and the training log) and
where the benchmark's PyTorch peer runs (the same device and dtype as jax).

Peaks are the vendors' datasheet figures for dense bfloat16 matmuls, TFLOP/s per chip (NVIDIA
lists "with sparsity" numbers: the dense figure is half of it):

* NVIDIA H100 SXM 989, H100 PCIe 756, H100 NVL 835; H200 (SXM) 989, H200 NVL 835; GH200 989
  (NVIDIA H100 / H200 / GH200 datasheets);
* NVIDIA A100 (SXM and PCIe, 40 and 80 GB) 312 (A100 datasheet); L4 121 (L4 datasheet);
  L40S 362 (L40S datasheet);
* Google TPU v4 275, v5e 197, v5p 459, v6e (Trillium) 918 (Cloud TPU system-architecture
  pages).

``jax.devices()[0].device_kind`` names them e.g. "NVIDIA H100 80GB HBM3", "NVIDIA H200",
"NVIDIA A100-SXM4-80GB", "TPU v4", "TPU v5 lite" (v5e), "TPU v5" (v5p), "TPU v6 lite" (v6e).
A chip not in the table (CPU included) has no peak: MFU is then reported only when
``--peak-tflops`` gives one.
"""

from __future__ import annotations

import dataclasses
import re

# (regex on the lower-cased device kind, bf16 dense TFLOP/s, chip name); first match wins, so
# the more specific variants come first.
PEAK_BF16_TFLOPS: tuple[tuple[str, float, str], ...] = (
    (r"\bgh200\b", 989.0, "GH200"),
    (r"\bh200 nvl\b", 835.0, "H200 NVL"),
    (r"\bh200\b", 989.0, "H200"),
    (r"\bh100 pcie\b", 756.0, "H100 PCIe"),
    (r"\bh100 nvl\b", 835.0, "H100 NVL"),
    (r"\bh100\b", 989.0, "H100 SXM"),
    (r"\ba100\b", 312.0, "A100"),
    (r"\bl40s\b", 362.0, "L40S"),
    (r"\bl4\b", 121.0, "L4"),
    (r"^tpu v4$", 275.0, "TPU v4"),
    (r"^tpu v5 ?(lite|e)$", 197.0, "TPU v5e"),
    (r"^tpu v5p?$", 459.0, "TPU v5p"),
    (r"^tpu v6 ?(lite|e)$", 918.0, "TPU v6e"),
)
SOURCE = "vendor datasheets, bf16 dense"


def chip_peak(device_kind: str) -> tuple[float, str] | None:
    """(bf16 dense peak TFLOP/s, chip name) of a jax ``device_kind``, or None if unknown."""
    kind = " ".join(device_kind.lower().replace("-", " ").split())
    for pattern, peak, name in PEAK_BF16_TFLOPS:
        if re.search(pattern, kind):
            return peak, name
    return None


def peak_tflops(device_kind: str, override: float | None = None) -> tuple[float | None, str]:
    """(peak TFLOP/s or None, where it came from): ``override`` (``--peak-tflops``) wins, else
    the table; None when neither knows the chip."""
    if override is not None:
        if not override > 0:
            raise ValueError(f"--peak-tflops must be > 0, got {override}")
        return float(override), "--peak-tflops"
    found = chip_peak(device_kind)
    if found is None:
        return None, f"no peak known for {device_kind!r} (give --peak-tflops)"
    return found[0], f"{found[1]} bf16 dense peak ({SOURCE})"


def achieved_tflops(pairs_per_s: float, flops_per_pair: float) -> float:
    """Model TFLOP/s actually delivered: pairs/s x FLOPs per pair / 1e12."""
    return pairs_per_s * flops_per_pair / 1e12


def mfu(pairs_per_s: float, flops_per_pair: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation (a fraction, 0..1) against ``peak`` TFLOP/s; None without one."""
    if not peak:
        return None
    return achieved_tflops(pairs_per_s, flops_per_pair) / peak


@dataclasses.dataclass(frozen=True)
class Peer:
    """Where the PyTorch peer runs: ``device`` ("cuda", "cpu", or None: no peer), its torch
    dtype name, whether that is jax's device too, and a note for the report."""

    device: str | None
    dtype: str
    same_device: bool
    note: str = ""

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"


def torch_peer(jax_backend: str, dtype: str) -> Peer:
    """The PyTorch peer follows jax: CUDA (``torch.device("cuda")``, which is also ROCm's name
    in torch) when jax runs on a GPU, the CPU when jax does, always in the bench's ``dtype``.
    PyTorch has no TPU device here, so on a TPU there is no peer (a host-CPU number would
    compare two different machines)."""
    if dtype not in ("float32", "bfloat16"):
        raise ValueError(f"dtype must be float32 or bfloat16, got {dtype!r}")
    backend = jax_backend.lower()
    if backend in ("gpu", "cuda", "rocm"):
        return Peer("cuda", dtype, True)
    if backend == "cpu":
        return Peer("cpu", dtype, True)
    return Peer(None, dtype, False, f"PyTorch has no {backend} device here: no PyTorch peer")
