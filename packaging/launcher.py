"""Entry script of the frozen app (PyInstaller needs a file, not a module path).

It only hands over to ``gemmadesk.__main__.main``, so the bundle starts exactly as ``python -m gemmadesk``
does: no arguments opens the window, ``--self-test`` checks the bundle, anything else is the CLI. Opening
the window first checks the X11 libraries Qt needs (``gemmadesk.core.desktop_libs``; the bundled xcb plugin
is found under ``sys._MEIPASS``) and, when one is missing, prints the command that installs it instead of
letting Qt abort.
"""

import multiprocessing
import sys

from gemmadesk.__main__ import main

if __name__ == "__main__":
    # A frozen app that ever starts a multiprocessing child must let the child take this path.
    multiprocessing.freeze_support()
    sys.exit(main())
