"""Choosing the training device and describing it (name, memory) for the status bar and the CLI summary."""

from __future__ import annotations

import torch

from ..protocol.errors import ConfigError


def resolve_device(spec: str) -> torch.device:
    """`auto` -> cuda, else mps, else cpu; an explicit device that is not there is a ConfigError naming the fix."""
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {spec}: this machine has no CUDA GPU that PyTorch can use; use --device cpu")
        device = torch.device(spec)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"--device {spec}: there are only {torch.cuda.device_count()} CUDA devices (cuda:0 to "
                f"cuda:{torch.cuda.device_count() - 1})"
            )
        return device
    if spec == "mps" and not _mps_available():
        raise ConfigError("--device mps: Apple's Metal backend is not available here; use --device cpu")
    return torch.device(spec)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def cuda_memory(device: torch.device) -> tuple[int, int] | None:
    """(bytes allocated by this process, total bytes) on a CUDA device; None elsewhere."""
    if device.type != "cuda":
        return None
    return torch.cuda.memory_allocated(device), torch.cuda.get_device_properties(device).total_memory
