"""Reports of run folders: ``report.md`` with its figures, written after every run and by ``uattn report``."""

from .build import write_report

__all__ = ["write_report"]
