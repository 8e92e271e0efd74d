"""The one base class for problems with what the user gave: the CLI prints the message as one line
and exits with code 2. Each part of bitnas subclasses it for its own kind of bad input."""


class UserError(ValueError):
    """Bad input (config, flag, genotype, dataset, study name); the message is one line."""


class RunFailed(RuntimeError):
    """Work that started but could not finish (e.g. too many trials failed); the CLI prints the
    message as one line and exits 1. Everything completed before it is kept."""
