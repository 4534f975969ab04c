"""What this machine has: RAM, every GPU with its memory, and what the installed llama.cpp build can use.

The result is a plain, JSON-serialisable :class:`Hardware` so that the fit estimator and recommender can
be run for any machine (tests, ``gemmadesk models --hardware FILE``). Each vendor probe is isolated: one
that is missing or fails adds a note to ``Hardware.notes`` and never stops the rest.

Rules that peer apps got wrong and we keep:
- integrated-GPU "VRAM" is never added to RAM (it *is* RAM);
- Apple Silicon is one unified pool, bounded by the GPU working-set limit;
- on Windows the memory comes from DXGI, not WMI ``AdapterRAM`` (which caps at 4 GiB).
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import psutil

from gemmadesk.core.backend import BackendInfo, probe_backend

log = logging.getLogger(__name__)

Vendor = Literal["nvidia", "amd", "intel", "apple", "other"]
MemoryKind = Literal["discrete", "integrated", "unified"]

PCI_VENDORS: dict[int, Vendor] = {0x10DE: "nvidia", 0x1002: "amd", 0x1022: "amd", 0x8086: "intel"}


@dataclass(frozen=True)
class GPU:
    name: str
    vendor: Vendor
    memory_kind: MemoryKind
    total_bytes: int  # dedicated VRAM; for integrated/unified GPUs the share of RAM it may use
    free_bytes: int | None = None
    source: str = ""  # which probe found it: nvml, sysfs, dxgi, apple, ggml
    index: int = 0
    usable_by_build: bool = False  # the installed llama.cpp build can offload to it
    backend: str = ""  # the llama.cpp backend that would drive it (CUDA, Metal, Vulkan, ...)
    bandwidth_bytes_s: float = 0.0  # memory bandwidth (NVML: clock x bus width; else a known-GPU table); 0 = unknown

    @property
    def offload_bytes(self) -> int:
        """Memory available for model offload on this GPU (free if known, else total)."""
        return self.free_bytes if self.free_bytes is not None else self.total_bytes


@dataclass(frozen=True)
class Hardware:
    os: str
    arch: str
    cpu_name: str
    cpu_cores: int
    cpu_threads: int
    ram_total_bytes: int
    ram_available_bytes: int
    gpus: tuple[GPU, ...] = ()
    backend: BackendInfo = field(default_factory=BackendInfo)
    notes: tuple[str, ...] = ()
    # RAM read bandwidth measured at probe time (bytes/s): one thread, and all physical cores (at most 8)
    # together; 0 = not measured (a described machine). The speed estimate interpolates between them.
    ram_bandwidth_1t_bytes_s: float = 0.0
    ram_bandwidth_bytes_s: float = 0.0
    ram_bandwidth_threads: int = 0  # how many threads the second figure used

    @property
    def usable_gpus(self) -> tuple[GPU, ...]:
        return tuple(g for g in self.gpus if g.usable_by_build)

    @property
    def best_gpu(self) -> GPU | None:
        """The usable GPU with the most memory for offload (llama.cpp's main device)."""
        usable = self.usable_gpus
        return max(usable, key=lambda g: g.offload_bytes) if usable else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Hardware:
        gpu_fields = set(GPU.__dataclass_fields__)
        gpus = []
        for g in data.get("gpus", ()):
            known: dict[str, Any] = {k: v for k, v in g.items() if k in gpu_fields}  # newer files: extra keys
            if "bandwidth_bytes_s" in known:
                known["bandwidth_bytes_s"] = _positive(known["bandwidth_bytes_s"])
            gpus.append(GPU(**known))
        backend = BackendInfo.from_dict(data.get("backend") or {})
        return cls(
            os=str(data.get("os", "unknown")),
            arch=str(data.get("arch", "unknown")),
            cpu_name=str(data.get("cpu_name", "")),
            cpu_cores=int(data.get("cpu_cores", 1)),
            cpu_threads=int(data.get("cpu_threads", data.get("cpu_cores", 1))),
            ram_total_bytes=int(data["ram_total_bytes"]),
            ram_available_bytes=int(data.get("ram_available_bytes", data["ram_total_bytes"])),
            gpus=tuple(gpus),
            backend=backend,
            notes=tuple(data.get("notes", ())),
            ram_bandwidth_1t_bytes_s=_positive(data.get("ram_bandwidth_1t_bytes_s")),
            ram_bandwidth_bytes_s=_positive(data.get("ram_bandwidth_bytes_s")),
            ram_bandwidth_threads=int(_positive(data.get("ram_bandwidth_threads"))),
        )

    @classmethod
    def from_json_file(cls, path: Path) -> Hardware:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def _positive(value: Any) -> float:
    """A finite positive number from a hardware file, else 0 (unknown)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if 0 < number < 1e15 else 0.0


# --------------------------------------------------------------------------------------------- probes


def _probe_nvml() -> list[GPU]:
    import pynvml  # from nvidia-ml-py

    pynvml.nvmlInit()
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            if isinstance(name, bytes):
                name = name.decode()
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            try:
                # NVML reports half the effective data rate for GDDR and HBM alike: x2 (double data rate).
                clock_mhz = pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_MEM)
                bus_bits = pynvml.nvmlDeviceGetMemoryBusWidth(handle)
                bandwidth = float(clock_mhz) * 1e6 * 2 * float(bus_bits) / 8
            except (pynvml.NVMLError, AttributeError, TypeError):
                bandwidth = 0.0
            gpus.append(
                GPU(
                    name=str(name),
                    vendor="nvidia",
                    memory_kind="discrete",
                    total_bytes=int(mem.total),
                    free_bytes=int(mem.free),
                    source="nvml",
                    index=i,
                    bandwidth_bytes_s=bandwidth,
                )
            )
        return gpus
    finally:
        pynvml.nvmlShutdown()


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip(), 0)
    except (OSError, ValueError):
        return None


def probe_linux_drm(root: Path = Path("/sys/class/drm")) -> list[GPU]:
    """AMD and Intel GPUs from sysfs (NVIDIA comes from NVML). ``root`` is a parameter for tests."""
    gpus: list[GPU] = []
    if not root.is_dir():
        return gpus
    for card in sorted(root.glob("card[0-9]*")):
        if "-" in card.name:  # connectors such as card0-HDMI-A-1
            continue
        dev = card / "device"
        vendor_id = _read_int(dev / "vendor")
        vendor = PCI_VENDORS.get(vendor_id or -1)
        if vendor is None or vendor == "nvidia":
            continue
        name = _drm_name(dev, vendor)
        vram_total = _read_int(dev / "mem_info_vram_total")
        vram_used = _read_int(dev / "mem_info_vram_used")
        gtt_total = _read_int(dev / "mem_info_gtt_total")
        gtt_used = _read_int(dev / "mem_info_gtt_used")
        if vendor == "amd" and vram_total is not None:
            # An APU reports a small carve-out as "VRAM" and most of its usable memory as GTT.
            integrated = vram_total <= 4 * 2**30 and (gtt_total or 0) >= max(8 * 2**30, 4 * vram_total)
            if integrated:
                total = (gtt_total or 0) + vram_total
                used = (gtt_used or 0) + (vram_used or 0)
                gpus.append(GPU(name, "amd", "integrated", total, max(total - used, 0), "sysfs", len(gpus)))
            else:
                free = vram_total - vram_used if vram_used is not None else None
                gpus.append(GPU(name, "amd", "discrete", vram_total, free, "sysfs", len(gpus)))
        elif vendor == "intel":
            lmem = _read_int(dev / "lmem_total_bytes")  # Arc (i915) exposes local memory on some kernels
            if lmem:
                gpus.append(GPU(name, "intel", "discrete", lmem, None, "sysfs", len(gpus)))
            else:
                # Integrated: shares system RAM. Report it, never add it to RAM.
                total = psutil.virtual_memory().total // 2
                gpus.append(GPU(name, "intel", "integrated", total, None, "sysfs", len(gpus)))
    return gpus


def _drm_name(dev: Path, vendor: Vendor) -> str:
    for candidate in ("product_name", "label"):
        try:
            text = (dev / candidate).read_text().strip()
            if text:
                return text
        except OSError:
            pass
    device_id = _read_int(dev / "device")
    return f"{vendor.upper()} GPU" + (f" [{device_id:04x}]" if device_id is not None else "")


def _probe_apple() -> list[GPU]:
    total = int(subprocess.run(["sysctl", "-n", "hw.memsize"], capture_output=True, text=True, check=True).stdout)
    try:
        name = subprocess.run(
            ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        name = "Apple Silicon"
    # Metal's recommendedMaxWorkingSetSize: about 2/3 of RAM up to 36 GiB, 3/4 above (what Metal reports
    # by default). When the llama.cpp Metal backend is present, its own figure replaces this in probe().
    limit = int(total * (0.75 if total > 36 * 2**30 else 2 / 3))
    return [GPU(f"{name} GPU", "apple", "unified", limit, None, "apple", 0)]


class _DXGI_ADAPTER_DESC1(ctypes.Structure):
    _fields_ = [
        ("Description", ctypes.c_wchar * 128),
        ("VendorId", ctypes.c_uint),
        ("DeviceId", ctypes.c_uint),
        ("SubSysId", ctypes.c_uint),
        ("Revision", ctypes.c_uint),
        ("DedicatedVideoMemory", ctypes.c_size_t),
        ("DedicatedSystemMemory", ctypes.c_size_t),
        ("SharedSystemMemory", ctypes.c_size_t),
        ("AdapterLuidLow", ctypes.c_uint32),
        ("AdapterLuidHigh", ctypes.c_int32),
        ("Flags", ctypes.c_uint),
    ]


def _probe_dxgi() -> list[GPU]:  # pragma: no cover - Windows only
    """Enumerate adapters through DXGI (IDXGIFactory1::EnumAdapters1 / IDXGIAdapter1::GetDesc1)."""
    windll = ctypes.windll  # type: ignore[attr-defined]
    dxgi = windll.dxgi

    class GUID(ctypes.Structure):
        _fields_ = [("a", ctypes.c_uint32), ("b", ctypes.c_uint16), ("c", ctypes.c_uint16), ("d", ctypes.c_ubyte * 8)]

    # IID_IDXGIFactory1 = 770aae78-f26f-4dba-a829-253c83d1b387
    iid = GUID(0x770AAE78, 0xF26F, 0x4DBA, (ctypes.c_ubyte * 8)(0xA8, 0x29, 0x25, 0x3C, 0x83, 0xD1, 0xB3, 0x87))
    factory = ctypes.c_void_p()
    if dxgi.CreateDXGIFactory1(ctypes.byref(iid), ctypes.byref(factory)) != 0:
        raise OSError("CreateDXGIFactory1 failed")

    def method(obj: ctypes.c_void_p, index: int, *argtypes: Any) -> Callable[..., int]:
        vtable = ctypes.cast(obj, ctypes.POINTER(ctypes.POINTER(ctypes.c_void_p))).contents
        proto = ctypes.WINFUNCTYPE(ctypes.c_long, ctypes.c_void_p, *argtypes)  # type: ignore[attr-defined]
        fn = proto(vtable[index])
        return lambda *args: int(fn(obj, *args))

    gpus: list[GPU] = []
    try:
        i = 0
        while True:
            adapter = ctypes.c_void_p()
            if method(factory, 12, ctypes.c_uint, ctypes.POINTER(ctypes.c_void_p))(i, ctypes.byref(adapter)) != 0:
                break  # DXGI_ERROR_NOT_FOUND: no more adapters
            desc = _DXGI_ADAPTER_DESC1()
            method(adapter, 10, ctypes.POINTER(_DXGI_ADAPTER_DESC1))(ctypes.byref(desc))
            method(adapter, 2)()  # Release
            i += 1
            if desc.Flags & 2:  # DXGI_ADAPTER_FLAG_SOFTWARE (Microsoft Basic Render Driver)
                continue
            vendor = PCI_VENDORS.get(desc.VendorId, "other")
            if vendor == "nvidia":
                continue  # NVML gives free memory too; avoid listing the card twice
            dedicated = int(desc.DedicatedVideoMemory)
            if dedicated >= 512 * 2**20:
                gpus.append(GPU(desc.Description, vendor, "discrete", dedicated, None, "dxgi", len(gpus)))
            else:
                shared = int(desc.SharedSystemMemory)
                gpus.append(GPU(desc.Description, vendor, "integrated", shared, None, "dxgi", len(gpus)))
    finally:
        method(factory, 2)()
    return gpus


# --------------------------------------------------------------------------------------------- bandwidth

# Memory bandwidth of well-known GPUs in GB/s (vendors' specifications), for GPUs NVML does not describe
# (Apple, AMD, Intel) and for machines described in a file. Longest matching name wins ("M3 Max" before "M3").
KNOWN_GPU_BANDWIDTH_GBS: dict[str, float] = {
    "H200": 4800, "H100 PCIe": 2000, "H100": 3350, "A100 80GB": 2039, "A100": 1555, "L40S": 864, "L4": 300,
    "A10": 600, "T4": 320, "RTX 5090": 1792, "RTX 5080": 960, "RTX 5070 Ti": 896, "RTX 5070": 672,
    "RTX 4090": 1008, "RTX 4080 SUPER": 736, "RTX 4080": 717, "RTX 4070 Ti": 504, "RTX 4070": 504,
    "RTX 4060 Ti": 288, "RTX 4060": 272, "RTX 3090": 936, "RTX 3080": 760, "RTX 3070": 448, "RTX 3060": 360,
    "M1 Ultra": 800, "M1 Max": 400, "M1 Pro": 200, "M1": 68, "M2 Ultra": 800, "M2 Max": 400, "M2 Pro": 200,
    "M2": 100, "M3 Ultra": 819, "M3 Max": 400, "M3 Pro": 150, "M3": 100, "M4 Max": 546, "M4 Pro": 273,
    "M4": 120, "RX 7900 XTX": 960, "RX 7900 XT": 800, "RX 7800 XT": 624, "RX 7600": 288, "RX 6900 XT": 512,
    "RX 6800 XT": 512, "Radeon 890M": 120, "Radeon 780M": 100, "Arc A770": 560, "Arc A750": 512,
    "Arc B580": 456,
}  # fmt: skip
DEFAULT_DISCRETE_GPU_BANDWIDTH = 300e9  # an unknown discrete GPU: a mid-range card
DEFAULT_RAM_BANDWIDTH = 20e9  # unmeasured RAM: dual-channel DDR4 as one process reads it


def known_gpu_bandwidth(name: str) -> float:
    """Bytes/s from :data:`KNOWN_GPU_BANDWIDTH_GBS` for a GPU name, 0 when it is not listed."""
    lowered = f" {name.lower()} "
    best = ""
    for key in KNOWN_GPU_BANDWIDTH_GBS:
        k = key.lower()
        i = lowered.find(k)
        # whole words only: "M3" must not match "M3 Max" (longer keys win anyway) nor "RTX 4070" match "14070"
        if i > 0 and not lowered[i - 1].isalnum() and not lowered[i + len(k)].isalnum() and len(key) > len(best):
            best = key
    return KNOWN_GPU_BANDWIDTH_GBS[best] * 1e9 if best else 0.0


def gpu_bandwidth(gpu: GPU, hw: Hardware | None = None) -> tuple[float, bool]:
    """(bytes/s, known) for a GPU: NVML's figure, the table, or a default (``known`` False). A shared-memory
    GPU without an entry reads RAM, so the measured RAM bandwidth stands in for it."""
    if gpu.bandwidth_bytes_s > 0:
        return gpu.bandwidth_bytes_s, True
    table = known_gpu_bandwidth(gpu.name)
    if table:
        return table, True
    if gpu.vendor == "apple":
        # An unlisted Apple chip: larger memory comes only with the wider-bus Pro/Max/Ultra chips.
        ram = hw.ram_total_bytes if hw is not None else gpu.total_bytes
        return (400e9 if ram >= 48 * 2**30 else 200e9 if ram >= 24 * 2**30 else 100e9), False
    if gpu.memory_kind != "discrete":
        if hw is not None and hw.ram_bandwidth_bytes_s > 0:
            return hw.ram_bandwidth_bytes_s, True
        return 60e9, False
    return DEFAULT_DISCRETE_GPU_BANDWIDTH, False


def _libc_memchr() -> Callable[[Any, int, int], Any] | None:
    """libc's memchr through ctypes: a vectorised read-only scan that releases the GIL."""
    import ctypes.util

    name = "msvcrt" if sys.platform == "win32" else ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else ctypes.CDLL(None)
        fn = libc.memchr
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_void_p
    fn.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    return fn


def measure_ram_bandwidth(threads: int, seconds: float = 0.12, total_bytes: int = 256 * 2**20) -> float:
    """Read bandwidth of RAM in bytes/s with ``threads`` threads scanning their own buffers at once (what
    a decoding llama.cpp does with its weights); the best of three short rounds. 0.0 when it cannot run.

    Each thread's rate is its bytes over its own CPU time, so other processes taking the cores (a busy
    desktop, a shared machine) do not make the memory look slow; the threads' rates are summed, but never
    beyond what the wall clock allows when they did run at once. Bounded: ``total_bytes`` of buffers (at
    least 32 MiB per thread, larger than common caches per core) and about ``3 * seconds`` of wall time."""
    import threading
    import time

    memchr = _libc_memchr()
    if memchr is None or threads < 1:
        return 0.0
    size = max(total_bytes // threads, 32 * 2**20)
    try:
        buffers = [ctypes.create_string_buffer(size) for _ in range(threads)]  # zero-filled: memchr(…, 1) scans all
    except MemoryError:
        return 0.0

    def scan(i: int, start: threading.Barrier, stop: threading.Event, out: list[tuple[int, float]]) -> None:
        buf = buffers[i]
        start.wait()
        cpu0, done = time.thread_time(), 0
        while not stop.is_set():
            memchr(buf, 1, size)
            done += size
        out[i] = (done, time.thread_time() - cpu0)

    best = 0.0
    for _ in range(3):
        start = threading.Barrier(threads + 1)
        stop = threading.Event()
        results = [(0, 0.0)] * threads
        workers = [threading.Thread(target=scan, args=(i, start, stop, results), daemon=True) for i in range(threads)]
        for w in workers:
            w.start()
        start.wait()
        t0 = time.perf_counter()
        time.sleep(seconds)
        stop.set()
        for w in workers:
            w.join()
        wall = time.perf_counter() - t0
        per_thread = [n / cpu for n, cpu in results if cpu > 0.005]
        if not per_thread:
            continue
        rate = sum(per_thread) if threads == 1 else max(sum(n for n, _ in results) / wall, max(per_thread))
        best = max(best, rate)
    return best


def decode_threads(physical_cores: int) -> int:
    """How many threads llama.cpp decodes with on a machine with this many physical cores: all but one.

    llama.cpp's threads meet at a barrier after every operation, so when another process takes one of
    the cores, every token waits for the thread parked behind it: on the 2-core development machine
    with one busy-loop neighbour, 2 threads decoded many times slower than 1 (benchmarks/bench_threads.py,
    docs/benchmarks.md). One core left free absorbs a desktop's background work; decoding is bound by
    memory bandwidth, which fewer threads than cores already saturate on larger machines."""
    return max(1, physical_cores - 1)


# --------------------------------------------------------------------------------------------- combine

# Which GPU vendors each llama.cpp backend can drive.
BACKEND_VENDORS: dict[str, tuple[Vendor, ...]] = {
    "CUDA": ("nvidia",),
    "ROCm": ("amd",),
    "HIP": ("amd",),
    "Metal": ("apple",),
    "Vulkan": ("nvidia", "amd", "intel", "apple", "other"),
    "SYCL": ("intel",),
    "OpenCL": ("intel", "amd", "other"),
}


def mark_usable(gpus: list[GPU], backend: BackendInfo) -> list[GPU]:
    """Set ``usable_by_build``/``backend`` on each GPU according to what the llama.cpp build offers."""
    if not backend.gpu_offload:
        return [replace(g, usable_by_build=False, backend="") for g in gpus]
    result = []
    for gpu in gpus:
        chosen = ""
        for name in backend.backends:
            if gpu.vendor in BACKEND_VENDORS.get(name, ()):
                chosen = name
                break
        result.append(replace(gpu, usable_by_build=bool(chosen), backend=chosen))
    return result


def _cpu_name() -> str:
    if sys.platform.startswith("linux"):
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
    return platform.processor() or platform.machine()


def probe(*, include_backend: bool = True, measure_bandwidth: bool = True) -> Hardware:
    """Probe this machine. Never raises for a failing vendor probe: it becomes a note.

    ``measure_bandwidth`` reads RAM for about 0.8 s to measure its bandwidth (for the speed estimate)."""
    notes: list[str] = []
    vm = psutil.virtual_memory()
    gpus: list[GPU] = []

    def attempt(label: str, fn: Callable[[], list[GPU]]) -> None:
        try:
            gpus.extend(fn())
        except ModuleNotFoundError as exc:
            notes.append(f"{label}: not available ({exc.name} is not installed)")
        except Exception as exc:  # a vendor probe must never crash the app
            log.debug("%s probe failed", label, exc_info=True)
            notes.append(f"{label}: {type(exc).__name__}: {exc}".strip())

    if sys.platform == "darwin":
        if platform.machine() == "arm64":
            attempt("Apple GPU", _probe_apple)
    else:
        attempt("NVIDIA (NVML)", _probe_nvml)
        if sys.platform.startswith("linux"):
            attempt("AMD/Intel (sysfs)", probe_linux_drm)
        elif sys.platform == "win32":
            attempt("DXGI", _probe_dxgi)

    backend = probe_backend() if include_backend else BackendInfo(error="not probed")
    if backend.error:
        notes.append(f"llama.cpp: {backend.error}")
    # Where llama.cpp itself reports a device's memory (Metal's working-set limit, say), prefer it.
    for dev in backend.devices:
        if dev.kind == "gpu" and dev.total_bytes:
            for i, gpu in enumerate(gpus):
                if gpu.vendor == "apple" and dev.backend == "Metal":
                    gpus[i] = replace(gpu, total_bytes=dev.total_bytes, free_bytes=dev.free_bytes)
    gpus = mark_usable(gpus, backend)
    gpus = [g if g.bandwidth_bytes_s else replace(g, bandwidth_bytes_s=known_gpu_bandwidth(g.name)) for g in gpus]
    cores = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    bw_threads = min(cores, 8)
    bw_1t = bw_all = 0.0
    if measure_bandwidth:
        try:
            bw_1t = measure_ram_bandwidth(1)
            bw_all = measure_ram_bandwidth(bw_threads) if bw_threads > 1 else bw_1t
        except Exception as exc:  # a measurement must never stop the probe
            log.debug("bandwidth measurement failed", exc_info=True)
            notes.append(f"RAM bandwidth: not measured ({type(exc).__name__}: {exc})")
    return Hardware(
        os=f"{platform.system()} {platform.release()}".strip(),
        arch=platform.machine(),
        cpu_name=_cpu_name(),
        cpu_cores=cores,
        cpu_threads=psutil.cpu_count(logical=True) or os.cpu_count() or 1,
        ram_total_bytes=int(vm.total),
        ram_available_bytes=int(vm.available),
        gpus=tuple(gpus),
        backend=backend,
        notes=tuple(notes),
        ram_bandwidth_1t_bytes_s=bw_1t,
        ram_bandwidth_bytes_s=max(bw_all, bw_1t),
        ram_bandwidth_threads=bw_threads if bw_all else 0,
    )
