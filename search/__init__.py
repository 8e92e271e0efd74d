"""bitnas.search: configuration, the driver that owns the study, tracking and reports.

Uses `evaluators` and `spaces`. The public API, imported on first use so that
`bitnas.search.config` stays light for the CLI:
- `load_config`, `SearchConfig`, `ConfigError`: the validated configuration;
- `run_search`, `summary_text`, `SearchOutcome`: a search and what it prints;
- `StudyArchive`: a study as the tools after a search read it (export uses nothing else);
- `eval_request`: what a worker receives, built from a config.
"""

from bitnas.lazy import lazy_namespace

_EXPORTS = {
    "load_config": "config", "SearchConfig": "config", "ConfigError": "config",
    "run_search": "driver", "summary_text": "summary", "SearchOutcome": "summary",
    "StudyArchive": "studies", "eval_request": "requests",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_namespace(__name__, globals(), _EXPORTS)
