"""`gemmadesk hw`: what this machine has and what the llama.cpp build can use."""

from __future__ import annotations

import argparse

from gemmadesk.cli.common import add_hardware_arg, load_hardware, print_json
from gemmadesk.core.units import human_bytes


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("hw", help="show RAM, GPUs and the llama.cpp backend")
    p.add_argument("--json", action="store_true", help="machine-readable output (also a --hardware file)")
    add_hardware_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    hw = load_hardware(args)
    if args.json:
        print_json(hw.to_dict())
        return 0
    print(f"System:  {hw.os} ({hw.arch}), {hw.cpu_name}, {hw.cpu_cores} cores / {hw.cpu_threads} threads")
    print(f"RAM:     {human_bytes(hw.ram_total_bytes)} total, {human_bytes(hw.ram_available_bytes)} available")
    if hw.ram_bandwidth_1t_bytes_s:
        print(f"         reads {hw.ram_bandwidth_1t_bytes_s / 1e9:.1f} GB/s with 1 thread, "
              f"{hw.ram_bandwidth_bytes_s / 1e9:.1f} GB/s with {hw.ram_bandwidth_threads} (measured now)")
    print(f"Engine:  {hw.backend.label}")
    if not hw.gpus:
        print("GPUs:    none found")
    for g in hw.gpus:
        usable = f"usable via {g.backend}" if g.usable_by_build else "NOT usable by this build"
        free = f", {human_bytes(g.free_bytes)} free" if g.free_bytes is not None else ""
        bandwidth = f", {g.bandwidth_bytes_s / 1e9:,.0f} GB/s" if g.bandwidth_bytes_s else ""
        print(f"GPU {g.index}:   {g.name} [{g.vendor}, {g.memory_kind}] {human_bytes(g.total_bytes)}{free}{bandwidth}"
              f" — {usable}")
    if hw.gpus and not hw.backend.gpu_offload:
        print("         This llama.cpp build is CPU-only. Rebuild with CMAKE_ARGS (see README) to use the GPU.")
    for note in hw.notes:
        print(f"note:    {note}")
    return 0
