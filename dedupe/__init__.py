"""dedupe: find every copy of a photo in a large library.

Public API: `scan(roots, settings, progress=..., cancel=...) -> ScanResult`, `Settings`, `load_settings`,
the JSON report functions `report_dict`, `write_report`, `read_report`, and `write_html` for the page;
`compare(a, b) -> Comparison` for two files and `search(queries, roots) -> SearchResult` for the copies
of some pictures in a library.

The names are imported on first use (PEP 562), so that `import dedupe.cli` for `dedupe --help` does not
pay for OpenCV and FAISS.
"""

import importlib
import sys
import types

__version__ = "0.1.0"

_EXPORTS = {
    **dict.fromkeys(("CompareError", "Comparison", "compare"), "compare"),
    **dict.fromkeys(("ConfigError", "Settings", "load_settings"), "config"),
    **dict.fromkeys(("Group", "Member", "Problem", "ScanResult"), "model"),
    "scan": "pipeline",
    "Cancelled": "progress",
    "write_html": "report.html",
    **dict.fromkeys(("ReportError", "read_report", "report_dict", "write_report"), "report.jsonreport"),
    **dict.fromkeys(("SearchError", "SearchResult", "search"), "search"),
}
"""Public name -> the submodule that defines it."""

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


class _Package(types.ModuleType):
    """`dedupe.compare` and `dedupe.search` are the functions, as they were when imported eagerly: the
    import system sets each submodule on its package when it first loads it, which must not replace them."""

    def __setattr__(self, name: str, value) -> None:
        if not (name in _EXPORTS and isinstance(value, types.ModuleType)):
            super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
