"""GPU status: the text the status bar and `nktui train`'s header show, the once-a-second cache, the NVML path
through a fake pynvml, and the fallback to torch's counters. The real-GPU test skips where CUDA is absent."""

from __future__ import annotations

import types

import pytest
import torch

from nktui.engine import gpu
from nktui.engine.gpu import GpuMonitor, GpuReading, gpu_line, gpu_monitor, gpu_text
from nktui.ui.widgets.status_bar import device_text

GIB = 2**30
H100 = GpuReading(0, "NVIDIA H100 80GB HBM3", int(12.34 * GIB), int(79.6 * GIB), 87, "nvml")


def test_reading_text_for_the_status_bar_and_the_header():
    assert gpu_text(H100) == "H100 80GB HBM3 12.3/79.6 GiB 87%"
    assert gpu_text(H100, name=False) == "12.3/79.6 GiB 87%"
    no_nvml = GpuReading(1, "Tesla T4", 3 * GIB // 2, 16 * GIB)
    assert gpu_text(no_nvml) == "T4 1.5/16.0 GiB"  # no utilisation without NVML
    assert gpu_text(None) == ""
    assert gpu_line(H100) == "GPU cuda:0: NVIDIA H100 80GB HBM3, 12.3 of 79.6 GiB in use, 87% busy"
    assert gpu_line(no_nvml) == (
        "GPU cuda:1: Tesla T4, 1.5 of 16.0 GiB in use (pip install 'nktui[gpu]' for utilisation)"
    )
    assert gpu_line(None) is None


def test_the_card_is_asked_at_most_once_per_interval():
    now = [100.0]
    readings = iter([H100, GpuReading(0, "NVIDIA H100 80GB HBM3", 40 * GIB, int(79.6 * GIB), 99, "nvml")])
    monitor = GpuMonitor(0, query=lambda: next(readings), interval=1.0, clock=lambda: now[0])
    assert monitor.reading() is H100
    for t in (100.2, 100.5, 100.99):  # the status bar redraws at 5 Hz: these come from the cache
        now[0] = t
        assert monitor.reading() is H100
    assert monitor.queries == 1
    now[0] = 101.0
    assert monitor.reading().utilization == 99 and monitor.queries == 2


def fake_pynvml(fail_utilization: bool = False):
    calls = []
    memory = types.SimpleNamespace(used=5 * GIB, total=80 * GIB, free=75 * GIB)

    def utilization(handle):
        calls.append("util")
        if fail_utilization:
            raise RuntimeError("not supported")
        return types.SimpleNamespace(gpu=42, memory=10)

    return calls, types.SimpleNamespace(
        nvmlDeviceGetHandleByUUID=lambda uuid: calls.append(("uuid", uuid)) or "handle",
        nvmlDeviceGetHandleByIndex=lambda index: calls.append(("index", index)) or "handle",
        nvmlDeviceGetName=lambda handle: b"NVIDIA A100-SXM4-40GB",  # older bindings return bytes
        nvmlDeviceGetMemoryInfo=lambda handle: memory,
        nvmlDeviceGetUtilizationRates=utilization,
    )


def test_nvml_numbers_and_the_handle_looked_up_once():
    calls, nvml = fake_pynvml()
    monitor = GpuMonitor(0, nvml=nvml, interval=0.0)
    first = monitor.reading()
    assert first == GpuReading(0, "NVIDIA A100-SXM4-40GB", 5 * GIB, 80 * GIB, 42, "nvml")
    monitor.reading()
    lookups = [c for c in calls if isinstance(c, tuple)]
    assert len(lookups) == 1 and calls.count("util") == 2  # (no CUDA here: the UUID lookup falls back to the index)
    calls, nvml = fake_pynvml(fail_utilization=True)
    assert GpuMonitor(0, nvml=nvml).reading().utilization is None  # a card that cannot say: memory still shown


def test_nvml_failing_falls_back_to_torch_and_a_failing_query_gives_none(monkeypatch):
    _, nvml = fake_pynvml()
    nvml.nvmlDeviceGetMemoryInfo = lambda handle: (_ for _ in ()).throw(RuntimeError("driver reloaded"))
    monkeypatch.setattr(gpu, "query_torch", lambda index: GpuReading(index, "from torch", 1, 2))
    monitor = GpuMonitor(3, nvml=nvml, interval=0.0)
    assert monitor.reading() == GpuReading(3, "from torch", 1, 2)
    monkeypatch.setattr(gpu, "query_torch", lambda index: 1 / 0)
    assert monitor.reading() is None  # never raises into the status bar


def test_cpu_devices_show_their_name_only():
    assert gpu_monitor(torch.device("cpu")) is None
    assert device_text("cpu") == "cpu"


def test_status_bar_text_on_cuda_with_a_reading():
    assert device_text("cuda:0", H100) == "cuda:0 H100 80GB HBM3 12.3/79.6 GiB 87%"
    assert device_text("cuda:0", None) == "cuda:0"


def test_the_run_side_publishes_the_reading_once_a_second(monkeypatch):
    """The status bar never asks the card: a thread of the run puts the reading on the controller."""
    import threading
    import time

    from nktui.training import Controller
    from nktui.engine.published import watch_gpu

    from dataclasses import replace

    used = iter(range(1, 10**6))
    monkeypatch.setitem(gpu._MONITORS, 0, GpuMonitor(0, query=lambda: replace(H100, used=next(used)), interval=0.0))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(gpu, "INTERVAL", 0.01)
    controller = Controller()
    done = threading.Event()
    controller.thread = threading.Thread(target=done.wait, daemon=True)
    controller.thread.start()
    watcher = watch_gpu(controller, torch.device("cuda:0"))
    assert controller.gpu.used == 1 and watcher is not None and watcher.is_alive()
    deadline = time.monotonic() + 10
    while controller.gpu.used < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert controller.gpu.used >= 3  # asked again and again, by the run's thread
    done.set()
    watcher.join(5)
    assert not watcher.is_alive()  # it ends with the training thread
    assert watch_gpu(controller, torch.device("cpu")) is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_real_gpu_reading():
    monitor = gpu_monitor(torch.device("cuda"))
    reading = monitor.reading()
    assert reading is not None and reading.total > 0 and 0 < reading.used <= reading.total
    assert reading.name == torch.cuda.get_device_name(0)
    if reading.source == "nvml":
        assert 0 <= reading.utilization <= 100
    assert monitor.reading() is reading  # cached
    assert gpu_line(reading).startswith("GPU cuda:0: ")


def test_nktui_train_header_has_the_gpu_line_on_cuda(monkeypatch):
    from nktui.cli import train as headless

    monkeypatch.setitem(gpu._MONITORS, 0, GpuMonitor(0, query=lambda: H100))
    cuda = types.SimpleNamespace(device=torch.device("cuda:0"))
    assert headless._gpu_line(cuda) == "GPU cuda:0: NVIDIA H100 80GB HBM3, 12.3 of 79.6 GiB in use, 87% busy"
    assert headless._gpu_line(types.SimpleNamespace(device=torch.device("cpu"))) is None
