"""What the fit list says: a recommendation for small machines, one RAM figure, no contradictions,
surprising rows explained, and the same "will not run" sentence in the window and the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gemmadesk.cli import main as cli_main
from gemmadesk.core.catalog import load_catalog
from gemmadesk.core.fit import (
    FitOptions,
    Verdict,
    memory_budget,
    plan_entry,
    recommend,
    surprising_notes,
    will_not_run_warning,
)
from gemmadesk.core.hardware import GPU, Hardware

GiB = 2**30


def small_machine(total_gib: float = 3.8, free_gib: float = 3.0) -> Hardware:
    """A "4 GB" laptop as issue 11 describes it (3.8 GiB usable): no usable GPU, 3 GiB available."""
    return Hardware("Linux", "x86_64", "Celeron", 2, 2, int(total_gib * GiB), int(free_gib * GiB),
                    ram_bandwidth_1t_bytes_s=8e9, ram_bandwidth_bytes_s=10e9, ram_bandwidth_threads=2)


def test_a_4gb_machine_gets_a_model_at_a_shorter_context() -> None:
    """Issue 11 item 3: `recommend` exited 3 ("nothing fits at 8,192 tokens") although E2B fits shorter."""
    catalog = load_catalog()
    rec = recommend(small_machine(), catalog, FitOptions(n_ctx=8192))
    assert rec.best is not None, rec.explanation
    assert rec.context_reduced and 2048 <= rec.n_ctx < 8192
    assert rec.best.options.n_ctx == rec.n_ctx and rec.best.fits_now
    assert catalog.get(rec.best.entry_id).size == "E2B"
    assert rec.explanation.startswith(f"Nothing fits at 8,192 tokens of context, so this is for {rec.n_ctx:,} tokens")
    # The longest: at the next 1024 tokens up, nothing fits in the memory free now.
    longer = recommend(small_machine(), catalog, FitOptions(n_ctx=rec.n_ctx + 1024))
    assert longer.context_reduced
    # With the UI's context choices it lands on one of them.
    ui = recommend(small_machine(), catalog, FitOptions(n_ctx=8192), context_steps=(2048, 4096, 8192))
    assert ui.n_ctx in (2048, 4096) and ui.best is not None


def test_cli_recommend_on_a_4gb_machine_exits_0_and_says_which_context(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    hw_file = tmp_path / "hw.json"
    hw_file.write_text(small_machine().to_json())
    assert cli_main(["recommend", "--hardware", str(hw_file), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["context_reduced"] and out["recommended"]["n_ctx"] == out["n_ctx"] < 8192
    assert cli_main(["recommend", "--hardware", str(hw_file)]) == 0
    text = capsys.readouterr().out
    assert "Nothing fits at 8,192 tokens" in text and "Recommended:" in text


def test_never_below_2k() -> None:
    rec = recommend(small_machine(2.5, 2.0), load_catalog(), FitOptions())
    assert rec.best is None
    assert "even at 2,048 tokens" in rec.explanation


def test_a_recommendation_never_says_it_does_not_fit_now() -> None:
    """The old text put "needs 2.5 GiB RAM: only 1.5 GiB is free now" next to a recommendation."""
    catalog = load_catalog()
    for free in (1.6, 2.0, 2.6, 3.2, 4.0, 6.0):
        rec = recommend(small_machine(6, free), catalog, FitOptions())
        if rec.best is None:
            continue
        if rec.best.fits_now:
            assert "only" not in rec.explanation and "close other apps" not in rec.explanation.lower()
        else:  # it fits only once other apps are closed: then the advice starts with that
            assert rec.explanation.startswith(("Close other apps first", "Nothing fits"))
            assert "Close other apps first" in rec.explanation


def test_one_ram_figure_and_the_reserve_explained_once() -> None:
    """Issue 11: one screen showed "23.0 GiB free", "of 21.5 GiB available" and "has 22.0 GiB for models"."""
    from gemmadesk.core.units import human_bytes
    from gemmadesk.ui.setup_view import hardware_summary_html

    hw = Hardware("Linux", "x86_64", "cpu", 2, 2, int(23.5 * GiB), int(23.0 * GiB))
    budget = memory_budget(hw)
    rec = recommend(hw, load_catalog(), FitOptions())
    texts = [hardware_summary_html(hw), rec.explanation, *(p.reason for p in rec.plans)]
    figures = {float(x) for t in texts for x in re.findall(r"(\d+\.\d) GiB of (?:the )?RAM|(\d+\.\d) GiB RAM", t)
               for x in x if x}
    allowed = {round(budget.ram_for_models / GiB, 1), round(hw.ram_total_bytes / GiB, 1)}
    assert figures and figures <= allowed, figures
    assert human_bytes(hw.ram_available_bytes) not in " ".join(texts)  # the raw "available" is never shown
    free_phrase = f"{human_bytes(budget.ram_for_models)} free for models"
    assert free_phrase in hardware_summary_html(hw)
    assert hardware_summary_html(hw).count("for the system and itself") == 1


def test_too_large_reason_adds_up() -> None:
    hw = small_machine(8, 6)
    plan = plan_entry(load_catalog().find("31b"), hw, FitOptions())
    assert plan.verdict is Verdict.TOO_LARGE
    assert "more than this machine's 8.0 GiB of RAM" in plan.reason
    warning = will_not_run_warning(plan)
    assert warning is not None and warning.startswith("This model will not run on this machine: it needs about")
    assert will_not_run_warning(plan_entry(load_catalog().find("e2b"), hw, FitOptions())) is None


def test_cli_pull_prints_the_same_warning_as_the_window(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    hw = small_machine(8, 6)
    hw_file = tmp_path / "hw.json"
    hw_file.write_text(hw.to_json())
    entry = load_catalog().find("31b")
    assert cli_main(["pull", "31b", "--hardware", str(hw_file)]) == 1  # stdin is not a terminal: refused
    err = capsys.readouterr().err
    expected = will_not_run_warning(plan_entry(entry, hw, FitOptions()))
    assert expected is not None and f"Warning: t{expected[1:]}" in err


def test_e4b_needing_more_than_12b_at_128k_is_explained() -> None:
    gpu = GPU("NVIDIA GeForce RTX 4090", "nvidia", "discrete", 24 * GiB, 23 * GiB, "nvml", 0, True, "CUDA")
    hw = Hardware("Linux", "x86_64", "cpu", 16, 32, 64 * GiB, 56 * GiB, (gpu,))
    catalog = load_catalog()
    rec = recommend(hw, catalog, FitOptions(n_ctx=131072))
    by_id = {p.entry_id: p for p in rec.plans}
    e4b, b12 = by_id["e4b-google-q4_0"], by_id["12b-google-q4_0"]
    assert e4b.estimate.total_bytes > b12.estimate.total_bytes
    notes = surprising_notes(rec.plans, catalog)
    note = notes["e4b-google-q4_0"]
    assert note.startswith("Gemma 4 E4B needs more memory than the larger 12B at 131,072 tokens")
    assert "flash attention is off" in note and "working buffers" in note
    assert "12b-google-q4_0" not in notes
    # At 8K nothing is surprising.
    assert "e4b-google-q4_0" not in surprising_notes(recommend(hw, catalog, FitOptions()).plans, catalog)


@pytest.mark.parametrize("ctx", [2048, 8192, 32768])
def test_speed_is_stated_in_every_recommendation(ctx: int) -> None:
    rec = recommend(small_machine(16, 14), load_catalog(), FitOptions(n_ctx=ctx))
    assert rec.best is not None and "tokens/s" in rec.explanation
