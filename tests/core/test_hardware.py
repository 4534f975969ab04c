"""Hardware probe: the real probe on this machine, JSON round trips, and vendor rules."""

from __future__ import annotations

import json
from pathlib import Path

from gemmadesk.core.backend import BackendInfo, probe_backend
from gemmadesk.core.hardware import GPU, Hardware, mark_usable, probe, probe_linux_drm

GiB = 2**30


def test_real_probe_reports_ram_and_the_llama_cpp_build() -> None:
    hw = probe()
    assert hw.ram_total_bytes > 1 * GiB
    assert 0 < hw.ram_available_bytes <= hw.ram_total_bytes
    assert hw.cpu_threads >= 1
    # The installed llama-cpp-python is real: its version and its CPU device come from ggml itself.
    assert hw.backend.llama_cpp_version == "0.3.36"
    assert "CPU" in hw.backend.backends
    assert any(d.kind == "cpu" and d.total_bytes > 0 for d in hw.backend.devices)
    # This CI machine has no GPU: the NVML probe fails, and says so instead of crashing.
    if not hw.gpus:
        assert any("NVML" in n for n in hw.notes)


def test_hardware_json_round_trip(tmp_path: Path) -> None:
    hw = probe()
    path = tmp_path / "hw.json"
    path.write_text(hw.to_json())
    again = Hardware.from_json_file(path)
    assert again == hw


def test_backend_label_says_cpu_only_or_names_the_gpu_backend() -> None:
    info = probe_backend()
    assert info.error is None
    assert info.label.startswith("llama-cpp-python 0.3.36")
    assert ("CPU only" in info.label) == (not info.gpu_offload)
    cuda = BackendInfo("0.3.36", True, ("CUDA", "CPU"))
    assert cuda.label == "llama-cpp-python 0.3.36 (CUDA)"


def test_gpu_is_usable_only_when_the_build_has_a_backend_for_it() -> None:
    nvidia = GPU("RTX", "nvidia", "discrete", 12 * GiB, 11 * GiB, "nvml")
    amd = GPU("RX", "amd", "discrete", 16 * GiB, None, "sysfs", 1)
    cpu_only = mark_usable([nvidia, amd], BackendInfo("0.3.36", False, ("CPU",)))
    assert not any(g.usable_by_build for g in cpu_only)
    cuda = mark_usable([nvidia, amd], BackendInfo("0.3.36", True, ("CUDA", "CPU")))
    assert [g.usable_by_build for g in cuda] == [True, False]
    assert cuda[0].backend == "CUDA"
    vulkan = mark_usable([nvidia, amd], BackendInfo("0.3.36", True, ("Vulkan", "CPU")))
    assert all(g.usable_by_build and g.backend == "Vulkan" for g in vulkan)


def _card(root: Path, name: str, files: dict[str, str]) -> None:
    dev = root / name / "device"
    dev.mkdir(parents=True)
    for key, value in files.items():
        (dev / key).write_text(value + "\n")


def test_linux_sysfs_amd_discrete_apu_and_intel(tmp_path: Path) -> None:
    """A fake /sys/class/drm tree: we cannot plug AMD/Intel GPUs into the CI machine, so the sysfs files
    they expose are written out (values as amdgpu/i915 report them)."""
    _card(tmp_path, "card0", {"vendor": "0x1002", "device": "0x744c", "mem_info_vram_total": str(24 * GiB),
                              "mem_info_vram_used": str(1 * GiB), "mem_info_gtt_total": str(16 * GiB),
                              "product_name": "Radeon RX 7900 XTX"})
    _card(tmp_path, "card1", {"vendor": "0x1002", "device": "0x15bf", "mem_info_vram_total": str(512 * 2**20),
                              "mem_info_vram_used": str(100 * 2**20), "mem_info_gtt_total": str(30 * GiB),
                              "mem_info_gtt_used": str(1 * GiB)})
    _card(tmp_path, "card2", {"vendor": "0x8086", "device": "0x46a6"})
    _card(tmp_path, "card3", {"vendor": "0x10de", "device": "0x2684"})  # NVIDIA: left to NVML
    (tmp_path / "card0-HDMI-A-1").mkdir()
    gpus = probe_linux_drm(tmp_path)
    assert [(g.vendor, g.memory_kind) for g in gpus] == [("amd", "discrete"), ("amd", "integrated"),
                                                        ("intel", "integrated")]
    assert gpus[0].name == "Radeon RX 7900 XTX"
    assert gpus[0].total_bytes == 24 * GiB and gpus[0].free_bytes == 23 * GiB
    # The APU's usable memory is its GTT share of RAM plus the carve-out, never added to RAM.
    assert gpus[1].total_bytes == 30 * GiB + 512 * 2**20


def test_hardware_file_from_another_machine_loads_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "mac.json"
    path.write_text(json.dumps({
        "os": "Darwin 24", "arch": "arm64", "ram_total_bytes": 16 * GiB,
        "gpus": [{"name": "Apple M3 GPU", "vendor": "apple", "memory_kind": "unified",
                  "total_bytes": 10 * GiB, "usable_by_build": True, "backend": "Metal"}],
        "backend": {"llama_cpp_version": "0.3.36", "gpu_offload": True, "backends": ["Metal", "CPU"]},
    }))
    hw = Hardware.from_json_file(path)
    assert hw.ram_available_bytes == 16 * GiB
    assert hw.best_gpu is not None and hw.best_gpu.memory_kind == "unified"
