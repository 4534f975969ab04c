"""`python -m gemmadesk` / the `gemmadesk` launcher: no arguments opens the window, otherwise the CLI."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] not in ("--self-test",) and not args[0].startswith("-platform"):
        from gemmadesk.cli import main as cli_main

        return cli_main(args)
    if args and args[0] == "--self-test":
        from gemmadesk.selftest import main as selftest_main

        return selftest_main(args[1:])
    from gemmadesk.ui.app import main as gui_main

    return gui_main(args)


if __name__ == "__main__":
    sys.exit(main())
