"""`medviewer` sub-commands; each module defines register(subparsers)."""
