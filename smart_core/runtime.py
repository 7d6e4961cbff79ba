"""Where tensors live and in which precision: read once from the config, here only.

`device`: auto (CUDA when present, else CPU) | cpu | cuda | cuda:N.
`precision`: auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16. On CPU, bf16 runs (the test
suite forces it to catch dtype mismatches of the CUDA path) but is slower than fp32 here: 14x for
Audiobox on the 2-core machine (README, Benchmarks), so `auto` keeps CPU runs in fp32.
"""

from __future__ import annotations

import re

import torch

from .errors import ConfigError

DEVICE_RE = re.compile(r"auto|cpu|cuda(:\d+)?")
PRECISIONS = ("auto", "fp32", "bf16")


def resolve_device(name: str = "auto") -> torch.device:
    if not DEVICE_RE.fullmatch(name or ""):
        raise ConfigError(f"device={name!r}: use auto, cpu, cuda or cuda:N")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device={name!r} but this machine has no CUDA GPU (torch {torch.__version__}); "
                              "use device=auto or device=cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device={name!r} but only {torch.cuda.device_count()} CUDA device(s) are visible")
    return device


def use_bf16(precision: str, device: torch.device) -> bool:
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r}: use one of {', '.join(PRECISIONS)}")
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def autocast(device: torch.device, precision: str = "auto"):
    """bf16 autocast when the precision asks for it (auto: on CUDA only), else a no-op."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16(precision, device))


def describe(device: torch.device, precision: str) -> dict:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {"device": str(device), "device_name": name, "bf16_autocast": use_bf16(precision, device)}
