"""bitnas.search: configuration, the driver that owns the study, tracking and reports.

Uses `evaluators` and `spaces`. Import submodules directly (`bitnas.search.driver`); this package
does not import them eagerly, so `bitnas.search.config` stays light for the CLI.
"""
