"""PyInstaller runtime hook: point MedViewer at the bundled resources folder."""
import os
import sys

base = getattr(sys, "_MEIPASS", os.path.dirname(sys.executable))
os.environ.setdefault("MEDVIEWER_RESOURCES", os.path.join(base, "resources"))
