"""bitnas.export: turn trials of a study into files that run."""

from .exporter import ExportError, ExportOptions, export_study, export_trial
from .packed_model import PACKED_FILE, bench, classify
from .selection import Selection, SelectionError, select_trials

__all__ = ["ExportError", "ExportOptions", "PACKED_FILE", "Selection", "SelectionError", "bench", "classify",
           "export_study", "export_trial", "select_trials"]
