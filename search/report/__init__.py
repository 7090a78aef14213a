"""Reports read from the storage alone: one study's plots and page, and the comparison of the techniques.

`search.report.study.write_study_report` draws one study (optimization history, parameter
importances, learning curves of the best trials, parallel coordinates) into PNGs and a
self-contained HTML page; `search.report.compare.write_comparison` sets the best study of each
search space against its reference-model trial. This module stays light (no Matplotlib), so
the command line can build its help from it without a plotting library's import time.
"""

from __future__ import annotations

from pathlib import Path

REPORTS_DIR = Path("reports")  # a study's report goes to reports/<study>/, the comparison to reports/compare/
COMPARE_DIR = REPORTS_DIR / "compare"
