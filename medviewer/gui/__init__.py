"""Qt user interface (PySide6 + pyqtgraph). The only package that imports Qt."""
