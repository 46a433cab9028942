"""Summary tables (OpenCompass columns) as txt/csv/md, on the console, the HTML report, and run comparison."""

from proctor.report.compare import Comparison, CompareRow, compare_runs, write_compare
from proctor.report.html import MAX_SAMPLES, write_html_report
from proctor.report.manifests import ManifestChange, diff_manifests, measured_changes
from proctor.report.summary import (
    MISSING,
    DatasetRowInfo,
    Summary,
    SummaryGroup,
    SummaryRow,
    build_summary,
)
from proctor.report.writers import (
    format_csv,
    format_markdown,
    format_text,
    format_value,
    print_summary,
    read_summary_csv,
    summary_cells,
    summary_columns,
    write_summary,
)

__all__ = [
    "MAX_SAMPLES",
    "CompareRow",
    "Comparison",
    "ManifestChange",
    "compare_runs",
    "diff_manifests",
    "measured_changes",
    "write_compare",
    "MISSING",
    "DatasetRowInfo",
    "Summary",
    "SummaryGroup",
    "SummaryRow",
    "build_summary",
    "format_csv",
    "format_markdown",
    "format_text",
    "format_value",
    "print_summary",
    "read_summary_csv",
    "summary_cells",
    "summary_columns",
    "write_html_report",
    "write_summary",
]
