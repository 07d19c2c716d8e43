"""Export stage: SavedModel and ONNX artifacts with recorded parity (see export/stage.py)."""

from export.errors import ExportError
from export.stage import FORMATS, export_task

__all__ = ["ExportError", "FORMATS", "export_task"]
