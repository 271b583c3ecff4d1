"""dedupe: find every copy of a photo in a large library.

Public API: `scan(roots, settings, progress=..., cancel=...) -> ScanResult`, `Settings`, `load_settings`,
the JSON report functions `report_dict`, `write_report`, `read_report`, and `write_html` for the page;
`compare(a, b) -> Comparison` for two files and `search(queries, roots) -> SearchResult` for the copies
of some pictures in a library.
"""

__version__ = "0.1.0"

from .compare import CompareError, Comparison, compare  # noqa: E402
from .config import ConfigError, Settings, load_settings  # noqa: E402
from .model import Group, Member, Problem, ScanResult  # noqa: E402
from .pipeline import scan  # noqa: E402
from .progress import Cancelled  # noqa: E402
from .report.html import write_html  # noqa: E402
from .report.jsonreport import ReportError, read_report, report_dict, write_report  # noqa: E402
from .search import SearchError, SearchResult, search  # noqa: E402

__all__ = [
    "Cancelled",
    "CompareError",
    "Comparison",
    "ConfigError",
    "Group",
    "Member",
    "Problem",
    "ReportError",
    "ScanResult",
    "SearchError",
    "SearchResult",
    "Settings",
    "load_settings",
    "read_report",
    "report_dict",
    "scan",
    "compare",
    "search",
    "write_html",
    "write_report",
    "__version__",
]
