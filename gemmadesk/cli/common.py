"""Helpers shared by the CLI sub-commands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gemmadesk.core.hardware import Hardware


def add_hardware_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--hardware", type=Path, metavar="FILE",
        help="plan for the machine described in this JSON file (as printed by `gemmadesk hw --json`)",
    )


def load_hardware(args: argparse.Namespace) -> Hardware:
    if getattr(args, "hardware", None):
        try:
            return Hardware.from_json_file(args.hardware)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SystemExit(f"error: cannot read hardware description {args.hardware}: {exc}") from exc
    from gemmadesk.core.hardware import probe

    return probe()


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
