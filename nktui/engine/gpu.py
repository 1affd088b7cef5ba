"""GPU status for the status bar and `nktui train`'s header: the card's name, memory used and total, utilisation.

    monitor = gpu_monitor(torch.device("cuda:0"))
    reading = monitor.reading()          # cached: the card is asked at most once per `interval` seconds
    gpu_text(reading)                    # "H100 80GB HBM3 12.3/79.6 GiB 87%"

Where NVIDIA's management library is installed (`nvidia-ml-py`, the optional extra `nktui[gpu]`), the numbers are
NVML's, as `nvidia-smi` shows them: the memory every process uses on the card and its utilisation. Without it,
torch's own counters give the memory (`cudaMemGetInfo`: used = total - free, also for the whole card) and no
utilisation. Nothing here runs tensor code, so the UI thread may call it; a query costs well under a millisecond
and happens at most once a second. Reading the numbers never raises: a failing query gives None (the status bar
then shows the device alone).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

INTERVAL = 1.0  # seconds between two queries of the same card
GIB = 2**30


@dataclass(frozen=True)
class GpuReading:
    """One look at a CUDA device. `used` is the card's memory in use by every process; `utilization` is the
    percent of the last sample period in which a kernel ran (None without NVML)."""

    index: int
    name: str
    used: int  # bytes
    total: int  # bytes
    utilization: int | None = None
    source: str = "torch"  # "nvml" or "torch"


def short_name(name: str) -> str:
    """`NVIDIA H100 80GB HBM3` -> `H100 80GB HBM3`: the vendor is implied in a terminal this narrow."""
    for prefix in ("NVIDIA GeForce ", "NVIDIA ", "Tesla "):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def gpu_text(reading: GpuReading | None, *, name: bool = True) -> str:
    """`H100 80GB HBM3 12.3/79.6 GiB 87%` (the utilisation only where NVML gave one); '' for no reading."""
    if reading is None:
        return ""
    parts = [short_name(reading.name)] if name else []
    parts.append(f"{reading.used / GIB:.1f}/{reading.total / GIB:.1f} GiB")
    if reading.utilization is not None:
        parts.append(f"{reading.utilization}%")
    return " ".join(parts)


def gpu_line(reading: GpuReading | None) -> str | None:
    """The header line of `nktui train`: `GPU cuda:0: NVIDIA H100 80GB HBM3, 1.2 of 79.6 GiB in use, 0% busy`."""
    if reading is None:
        return None
    line = (f"GPU cuda:{reading.index}: {reading.name}, {reading.used / GIB:.1f} of {reading.total / GIB:.1f} GiB "
            "in use")
    if reading.utilization is not None:
        line += f", {reading.utilization}% busy"
    else:
        line += " (pip install 'nktui[gpu]' for utilisation)"
    return line


# -- where the numbers come from ------------------------------------------------------------------------------
def load_nvml() -> Any | None:
    """The initialised `pynvml` module, or None when nvidia-ml-py is missing or there is no NVIDIA driver."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound, DriverNotLoaded ...: torch's counters it is
        return None
    return pynvml


def nvml_handle(nvml: Any, index: int) -> Any:
    """NVML's handle of CUDA device `index`. CUDA numbers only the visible devices (CUDA_VISIBLE_DEVICES), NVML
    numbers them all: the card's UUID matches them up; the index is the fallback."""
    try:
        import torch

        uuid = str(torch.cuda.get_device_properties(index).uuid)
        return nvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}")
    except Exception:
        return nvml.nvmlDeviceGetHandleByIndex(index)


def query_nvml(nvml: Any, handle: Any, index: int) -> GpuReading:
    name = nvml.nvmlDeviceGetName(handle)
    if isinstance(name, bytes):  # older nvidia-ml-py versions return bytes
        name = name.decode(errors="replace")
    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
    try:
        utilization = int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
    except Exception:  # not supported on this card (some MIG slices)
        utilization = None
    return GpuReading(index, str(name), int(memory.used), int(memory.total), utilization, "nvml")


def query_torch(index: int) -> GpuReading:
    import torch

    free, total = torch.cuda.mem_get_info(index)
    return GpuReading(index, torch.cuda.get_device_name(index), int(total - free), int(total), None, "torch")


class GpuMonitor:
    """Readings of one CUDA device, cached for `interval` seconds. `nvml`: the pynvml module (tests pass a fake;
    None: use torch's counters); `query`: replaces both (tests)."""

    def __init__(
        self,
        index: int,
        *,
        nvml: Any | None = None,
        query: Callable[[], GpuReading] | None = None,
        interval: float = INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.index = index
        self.interval = interval
        self.clock = clock
        self.queries = 0  # how often the card was asked (tests check the cache)
        self._nvml = nvml
        self._handle: Any = None
        self._query = query
        self._reading: GpuReading | None = None
        self._at: float | None = None

    def _ask(self) -> GpuReading:
        if self._query is not None:
            return self._query()
        if self._nvml is not None:
            try:
                if self._handle is None:
                    self._handle = nvml_handle(self._nvml, self.index)
                return query_nvml(self._nvml, self._handle, self.index)
            except Exception:  # NVML went away (driver reload): torch's counters from now on
                self._nvml = None
        return query_torch(self.index)

    def reading(self) -> GpuReading | None:
        """The newest reading; asks the card only when the cached one is older than `interval`."""
        now = self.clock()
        if self._at is not None and now - self._at < self.interval:
            return self._reading
        self._at = now
        self.queries += 1
        try:
            self._reading = self._ask()
        except Exception:
            self._reading = None
        return self._reading


_MONITORS: dict[int, GpuMonitor] = {}


def gpu_monitor(device: Any) -> GpuMonitor | None:
    """The shared monitor of a CUDA device (a torch.device or `cuda:N`); None for any other device."""
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    monitor = _MONITORS.get(index)
    if monitor is None:
        monitor = _MONITORS[index] = GpuMonitor(index, nvml=load_nvml())
    return monitor
