"""What the installed llama.cpp build (through llama-cpp-python) can do: its backends and devices.

``llama_cpp`` is imported lazily here, so that the app's start-up and the CLI's `hw --no-backend` do not
pay for loading the native library. The device list comes from ggml's own backend registry
(``ggml_backend_dev_*``) through ctypes, so a GPU the build cannot drive is never counted as usable.
"""

from __future__ import annotations

import ctypes
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger(__name__)

_DEV_KINDS = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel", 4: "meta"}

# ggml registry names -> the names we show. Anything else is shown as ggml names it.
_BACKEND_NAMES = {"cuda": "CUDA", "metal": "Metal", "vulkan": "Vulkan", "rocm": "ROCm", "hip": "HIP",
                  "sycl": "SYCL", "opencl": "OpenCL", "cpu": "CPU", "blas": "BLAS"}


@dataclass(frozen=True)
class BackendDevice:
    name: str
    description: str
    backend: str
    kind: str  # cpu | gpu | igpu | accel
    total_bytes: int = 0
    free_bytes: int | None = None


@dataclass(frozen=True)
class BackendInfo:
    llama_cpp_version: str | None = None
    gpu_offload: bool = False
    backends: tuple[str, ...] = ()  # e.g. ("CUDA", "CPU")
    devices: tuple[BackendDevice, ...] = ()
    system_info: str = ""
    error: str | None = None

    @property
    def label(self) -> str:
        """One-line description, e.g. 'llama.cpp 0.3.36 (CPU only)' or '... (CUDA)'."""
        version = self.llama_cpp_version or "?"
        if self.error and not self.llama_cpp_version:
            return f"llama.cpp unavailable: {self.error}"
        gpu = [b for b in self.backends if b not in ("CPU", "BLAS")]
        return f"llama-cpp-python {version} ({', '.join(gpu) if gpu else 'CPU only'})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackendInfo:
        devices = tuple(BackendDevice(**d) for d in data.get("devices", ()))
        return cls(
            llama_cpp_version=data.get("llama_cpp_version"),
            gpu_offload=bool(data.get("gpu_offload", False)),
            backends=tuple(data.get("backends", ())),
            devices=devices,
            system_info=str(data.get("system_info", "")),
            error=data.get("error"),
        )


@dataclass
class _Ggml:
    lib: Any
    fns: dict[str, Any] = field(default_factory=dict)


def _bind(lib: Any) -> _Ggml:
    g = _Ggml(lib)
    specs: dict[str, tuple[Any, list[Any]]] = {
        "ggml_backend_dev_count": (ctypes.c_size_t, []),
        "ggml_backend_dev_get": (ctypes.c_void_p, [ctypes.c_size_t]),
        "ggml_backend_dev_name": (ctypes.c_char_p, [ctypes.c_void_p]),
        "ggml_backend_dev_description": (ctypes.c_char_p, [ctypes.c_void_p]),
        "ggml_backend_dev_memory": (None, [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t),
                                           ctypes.POINTER(ctypes.c_size_t)]),
        "ggml_backend_dev_type": (ctypes.c_int, [ctypes.c_void_p]),
        "ggml_backend_dev_backend_reg": (ctypes.c_void_p, [ctypes.c_void_p]),
        "ggml_backend_reg_name": (ctypes.c_char_p, [ctypes.c_void_p]),
    }
    for name, (restype, argtypes) in specs.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
        g.fns[name] = fn
    return g


def _list_devices(g: _Ggml) -> list[BackendDevice]:
    f = g.fns
    devices = []
    for i in range(int(f["ggml_backend_dev_count"]())):
        dev = f["ggml_backend_dev_get"](i)
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        f["ggml_backend_dev_memory"](dev, ctypes.byref(free), ctypes.byref(total))
        reg = f["ggml_backend_dev_backend_reg"](dev)
        reg_name = (f["ggml_backend_reg_name"](reg) or b"").decode(errors="replace") if reg else ""
        kind = _DEV_KINDS.get(int(f["ggml_backend_dev_type"](dev)), "other")
        devices.append(
            BackendDevice(
                name=(f["ggml_backend_dev_name"](dev) or b"").decode(errors="replace"),
                description=(f["ggml_backend_dev_description"](dev) or b"").decode(errors="replace"),
                backend=_BACKEND_NAMES.get(reg_name.lower(), reg_name),
                kind=kind,
                total_bytes=int(total.value),
                free_bytes=int(free.value) if kind != "cpu" else None,
            )
        )
    return devices


def probe_backend() -> BackendInfo:
    """Load llama-cpp-python and report its build. Never raises: problems land in ``error``."""
    try:
        import llama_cpp
    except Exception as exc:  # missing package, or a native library that fails to load
        return BackendInfo(error=f"llama-cpp-python could not be loaded ({type(exc).__name__}: {exc})")
    version = str(getattr(llama_cpp, "__version__", "?"))
    try:
        llama_cpp.llama_backend_init()
        offload = bool(llama_cpp.llama_supports_gpu_offload())
        sysinfo = llama_cpp.llama_print_system_info().decode(errors="replace").strip()
    except Exception as exc:
        return BackendInfo(llama_cpp_version=version, error=f"llama.cpp did not initialise ({exc})")
    devices: list[BackendDevice] = []
    error = None
    try:
        from llama_cpp import _ggml

        devices = _list_devices(_bind(_ggml.libggml))
    except Exception as exc:
        log.debug("ggml device list unavailable", exc_info=True)
        error = f"device list unavailable ({type(exc).__name__}: {exc})"
    backends: list[str] = []
    for dev in devices:
        if dev.backend and dev.backend not in backends:
            backends.append(dev.backend)
    if not backends:
        backends = ["CPU"]
    # GPU backends first, CPU last: the order llama.cpp offloads in.
    backends.sort(key=lambda b: b in ("CPU", "BLAS"))
    return BackendInfo(
        llama_cpp_version=version,
        gpu_offload=offload,
        backends=tuple(backends),
        devices=tuple(devices),
        system_info=sysinfo,
        error=error,
    )
