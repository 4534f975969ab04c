"""`gemmadesk models`: the memory-fit list of Gemma 4 QAT models for this machine, with a recommendation."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict

from gemmadesk.cli.common import add_hardware_arg, load_hardware, print_json
from gemmadesk.core.catalog import Catalog, CatalogEntry
from gemmadesk.core.catalog_refresh import current_catalog, refresh
from gemmadesk.core.fit import (
    FitOptions,
    Plan,
    entry_layout,
    max_contexts,
    memory_budget,
    recommend,
    surprising_notes,
)
from gemmadesk.core.hardware import Hardware
from gemmadesk.core.speed import MeasuredSpeed, SpeedEstimate
from gemmadesk.core.units import human_bytes


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("models", help="which Gemma 4 QAT models fit this machine (memory-fit list)")
    p.add_argument("-c", "--ctx", type=int, default=8192, help="context length in tokens (default 8192)")
    p.add_argument("--kv", choices=("f16", "q8_0", "q4_0"), default="f16", help="KV-cache type")
    p.add_argument("--flash-attn", choices=("auto", "on", "off"), default="auto")
    for flag, text in (
        ("--vision", "include the vision projector (mmproj)"), ("--all", "also list formats this app cannot run"),
        ("--refresh", "first update file sizes and sha256 from the Hub"), ("--json", "machine-readable output"),
    ):
        p.add_argument(flag, action="store_true", help=text)
    add_hardware_arg(p)
    p.set_defaults(func=run)

    r = sub.add_parser("recommend", help="the best Gemma 4 model for this machine, why, and the runner-up")
    r.add_argument("-c", "--ctx", type=int, default=8192, help="context length in tokens (default 8192)")
    r.add_argument("--json", action="store_true", help="machine-readable output")
    add_hardware_arg(r)
    r.set_defaults(func=run_recommend)


def _measured(hw: Hardware) -> tuple[MeasuredSpeed, ...]:
    """Decode speeds GemmaDesk recorded on this machine (none for a machine described by --hardware)."""
    from gemmadesk.core.speed_log import SpeedLog, machine_key

    return SpeedLog().load(machine_key(hw))


def _speed_json(speed: SpeedEstimate | None) -> dict[str, object] | None:
    if speed is None:
        return None
    return {"tokens_per_s": round(speed.tokens_per_s, 2),
            "tokens_per_s_full_context": round(speed.tokens_per_s_full, 2), "basis": speed.basis,
            "slow": speed.slow, "threads": speed.threads, "limited_by": speed.limited_by,
            "bandwidth_known": speed.bandwidth_known}


def run_recommend(args: argparse.Namespace) -> int:
    """Exit 0 with a recommendation (at a shorter context if nothing fits at --ctx), 3 when no model fits."""
    hw = load_hardware(args)
    catalog = current_catalog()
    rec = recommend(hw, catalog, FitOptions(n_ctx=args.ctx), _measured(hw))
    best, second = rec.best, rec.runner_up
    if args.json:
        def brief(plan: Plan | None) -> dict[str, object] | None:
            if plan is None:
                return None
            entry = catalog.get(plan.entry_id)
            limits = max_contexts(entry_layout(entry, catalog), hw, plan.options, entry)
            return {"id": plan.entry_id, "label": entry.label, "verdict": plan.verdict.value, "tight": plan.tight,
                    "fits_now": plan.fits_now, "n_ctx": plan.options.n_ctx,
                    "n_gpu_layers": plan.n_gpu_layers, "gpu_bytes": plan.estimate.gpu_bytes,
                    "ram_bytes": plan.estimate.cpu_bytes, "reason": plan.reason, "speed": _speed_json(plan.speed),
                    "max_ctx": {"gpu": limits.gpu, "partial": limits.partial, "cpu": limits.cpu}}

        print_json({"recommended": brief(best), "runner_up": brief(second), "explanation": rec.explanation,
                    "n_ctx": rec.n_ctx, "asked_ctx": rec.asked_ctx, "context_reduced": rec.context_reduced})
    elif best is None:
        print(rec.explanation)
    else:
        print(f"Recommended: {rec.explanation}")
        if second is not None:
            print(f"Runner-up:   {catalog.get(second.entry_id).label} — {second.reason}.")
        print(f"Memory:      {memory_budget(hw).sentence()}.")
    return 0 if best is not None else 3


def run(args: argparse.Namespace) -> int:
    if args.ctx < 256:
        raise SystemExit("error: --ctx must be at least 256 tokens")
    hw = load_hardware(args)
    if args.refresh:
        result = refresh()
        print(f"refreshed {result.updated} file(s) from the Hub ({result.repos_ok} repositories)", file=sys.stderr)
        for line in result.errors:
            print(f"  {line}", file=sys.stderr)
    catalog = current_catalog()
    options = FitOptions(n_ctx=args.ctx, kv_type=args.kv, flash_attn=args.flash_attn, with_mmproj=args.vision)
    rec = recommend(hw, catalog, options, _measured(hw))
    best_id = rec.best.entry_id if rec.best else None
    notes = surprising_notes(rec.plans, catalog)
    if args.json:
        rows = []
        for plan in rec.plans:
            entry = catalog.get(plan.entry_id)
            rows.append({
                "id": entry.id, "size": entry.size, "format": entry.format, "publisher": entry.publisher,
                "repo_id": entry.repo_id, "file": entry.file.filename if entry.file else None,
                "file_bytes": entry.file.size_bytes if entry.file else None,
                "verdict": plan.verdict.value, "tight": plan.tight, "n_gpu_layers": plan.n_gpu_layers,
                "gpu_bytes": plan.estimate.gpu_bytes, "ram_bytes": plan.estimate.cpu_bytes,
                "kv_bytes": plan.estimate.kv_bytes, "estimate": asdict(plan.estimate),
                "flash_attn": plan.flash_attn, "type_k": plan.type_k, "type_v": plan.type_v,
                "reason": plan.reason,
                "notes": list(plan.notes) + ([notes[plan.entry_id]] if plan.entry_id in notes else []),
                "fits_now": plan.fits_now, "speed": _speed_json(plan.speed), "recommended": plan.entry_id == best_id,
                "max_ctx": asdict(max_contexts(entry_layout(entry, catalog), hw, options, entry)),
            })
        info = [{"id": e.id, "size": e.size, "format": e.format, "repo_id": e.repo_id, "runner": e.runner,
                 **_vllm_json(e, catalog, args.ctx)}
                for e in catalog.entries if not e.runnable] if args.all else []
        print_json({"options": asdict(options), "recommended": best_id, "explanation": rec.explanation,
                    "recommended_ctx": rec.n_ctx, "models": rows, "not_runnable": info})
        return 0
    print(f"Memory fit at {args.ctx:,} tokens of context, KV {args.kv} — {hw.backend.label}")
    print(f"{memory_budget(hw).sentence()}.")
    print(f"  {'':2}{'model':10}{'format':12}{'file':>9}{'VRAM':>10}{'RAM':>10}{'speed':>16}  verdict")
    for plan in rec.plans:
        e = catalog.get(plan.entry_id)
        mark = "★ " if plan.entry_id == best_id and rec.n_ctx == args.ctx else "  "
        verdict = plan.verdict.label + (" (tight)" if plan.tight else "")
        size = human_bytes(e.file.size_bytes if e.file else None)
        vram = human_bytes(plan.estimate.gpu_bytes) if plan.estimate.gpu_bytes else "-"
        speed = plan.speed.label() if plan.speed else "-"
        print(f"  {mark}{e.size:10}{e.format:12}{size:>9}{vram:>10}{human_bytes(plan.estimate.cpu_bytes):>10}"
              f"{speed:>16}  {verdict}")
    for note in notes.values():
        print(f"  note: {note}")
    if args.all:
        print("\nOther Gemma 4 QAT formats (not runnable by GemmaDesk):")
        for e in catalog.entries:
            if not e.runnable:
                print(f"  {e.size:10}{e.format:20}{e.repo_id:50} → {e.runner}")
                _print_vllm(e, catalog, args.ctx)
    print()
    print(("Recommended: " if rec.best else "") + rec.explanation)
    return 0


def _vllm_json(entry: CatalogEntry, catalog: Catalog, n_ctx: int) -> dict[str, object]:
    """For w4a16-ct rows: GPU memory per tensor-parallel degree and the vLLM command (gemmadesk.core.vllm_plan)."""
    from gemmadesk.core.vllm_plan import is_vllm_entry, plan_vllm

    if not is_vllm_entry(entry):
        return {}
    plan = plan_vllm(entry, catalog, min(max(256, n_ctx), catalog.arch(entry).n_ctx_train))
    return {"vllm": [{"tensor_parallel": o.tensor_parallel, "gpu_memory_needed": o.gpu_memory_needed,
                      "command": plan.command(o.tensor_parallel)} for o in plan.options]}  # fmt: skip


def _print_vllm(entry: CatalogEntry, catalog: Catalog, n_ctx: int) -> None:
    from gemmadesk.core.vllm_plan import is_vllm_entry, plan_vllm

    if not is_vllm_entry(entry):
        return
    plan = plan_vllm(entry, catalog, min(max(256, n_ctx), catalog.arch(entry).n_ctx_train))
    needs = ", ".join(f"{o.tensor_parallel}×{human_bytes(o.gpu_memory_needed)}" for o in plan.options)
    print(f"  {'':10}GPUs × memory each at {n_ctx:,} tokens: {needs}")
    print(f"  {'':10}{plan.command(plan.options[0].tensor_parallel)}   (see `gemmadesk remote vllm`)")
