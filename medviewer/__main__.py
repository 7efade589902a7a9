"""``python -m medviewer`` (guarded so process pools can import this module)."""

import sys

from medviewer.cli import main

if __name__ == "__main__":
    sys.exit(main())
