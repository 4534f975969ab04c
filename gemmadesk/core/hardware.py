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
        gpus = tuple(GPU(**g) for g in data.get("gpus", ()))
        backend = BackendInfo.from_dict(data.get("backend") or {})
        return cls(
            os=str(data.get("os", "unknown")),
            arch=str(data.get("arch", "unknown")),
            cpu_name=str(data.get("cpu_name", "")),
            cpu_cores=int(data.get("cpu_cores", 1)),
            cpu_threads=int(data.get("cpu_threads", data.get("cpu_cores", 1))),
            ram_total_bytes=int(data["ram_total_bytes"]),
            ram_available_bytes=int(data.get("ram_available_bytes", data["ram_total_bytes"])),
            gpus=gpus,
            backend=backend,
            notes=tuple(data.get("notes", ())),
        )

    @classmethod
    def from_json_file(cls, path: Path) -> Hardware:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


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
            gpus.append(
                GPU(
                    name=str(name),
                    vendor="nvidia",
                    memory_kind="discrete",
                    total_bytes=int(mem.total),
                    free_bytes=int(mem.free),
                    source="nvml",
                    index=i,
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


def probe(*, include_backend: bool = True) -> Hardware:
    """Probe this machine. Never raises for a failing vendor probe: it becomes a note."""
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
    return Hardware(
        os=f"{platform.system()} {platform.release()}".strip(),
        arch=platform.machine(),
        cpu_name=_cpu_name(),
        cpu_cores=psutil.cpu_count(logical=False) or os.cpu_count() or 1,
        cpu_threads=psutil.cpu_count(logical=True) or os.cpu_count() or 1,
        ram_total_bytes=int(vm.total),
        ram_available_bytes=int(vm.available),
        gpus=tuple(gpus),
        backend=backend,
        notes=tuple(notes),
    )
