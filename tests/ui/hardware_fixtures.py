"""Machines described as plain data (``Hardware.from_dict``), for planning without that hardware."""

from __future__ import annotations

from typing import Any

GB = 1024**3

CPU_BACKEND: dict[str, Any] = {"llama_cpp_version": "0.3.36", "gpu_offload": False, "backends": ["CPU"]}

LAPTOP_8GB: dict[str, Any] = {
    "os": "Windows 11",
    "arch": "AMD64",
    "cpu_name": "Intel Core i5-1135G7",
    "cpu_cores": 4,
    "cpu_threads": 8,
    "ram_total_bytes": 8 * GB,
    "ram_available_bytes": 5 * GB,
    "gpus": [
        {
            "name": "Intel Iris Xe Graphics",
            "vendor": "intel",
            "memory_kind": "integrated",
            "total_bytes": 4 * GB,
            "source": "dxgi",
            "usable_by_build": False,
        }
    ],
    "backend": CPU_BACKEND,
}

DESKTOP_24GB_NVIDIA: dict[str, Any] = {
    "os": "Linux 6.8",
    "arch": "x86_64",
    "cpu_name": "AMD Ryzen 9 7950X",
    "cpu_cores": 16,
    "cpu_threads": 32,
    "ram_total_bytes": 64 * GB,
    "ram_available_bytes": 56 * GB,
    "gpus": [
        {
            "name": "NVIDIA GeForce RTX 4090",
            "vendor": "nvidia",
            "memory_kind": "discrete",
            "total_bytes": 24 * GB,
            "free_bytes": 23 * GB,
            "source": "nvml",
            "usable_by_build": True,
            "backend": "CUDA",
        }
    ],
    "backend": {"llama_cpp_version": "0.3.36", "gpu_offload": True, "backends": ["CUDA", "CPU"]},
}

MAC_64GB: dict[str, Any] = {
    "os": "Darwin 24.1",
    "arch": "arm64",
    "cpu_name": "Apple M3 Max",
    "cpu_cores": 14,
    "cpu_threads": 14,
    "ram_total_bytes": 64 * GB,
    "ram_available_bytes": 48 * GB,
    "gpus": [
        {
            "name": "Apple M3 Max GPU",
            "vendor": "apple",
            "memory_kind": "unified",
            "total_bytes": 48 * GB,
            "source": "apple",
            "usable_by_build": True,
            "backend": "Metal",
        }
    ],
    "backend": {"llama_cpp_version": "0.3.36", "gpu_offload": True, "backends": ["Metal", "CPU"]},
}
