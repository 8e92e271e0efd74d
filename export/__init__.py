"""bitnas.export: turn trials of a study into files that run."""

from .exporter import ExportError, export_study, export_trial

__all__ = ["ExportError", "export_study", "export_trial"]
