"""Errors caused by the user's input (config, files, model packages).

Entry points print these as one line and exit with status 2; anything else is a bug
and keeps its traceback.
"""


class NlpLstmError(Exception):
    """Base class: the message alone must tell the user what to fix."""


class ConfigError(NlpLstmError):
    """A config value is wrong; the message names the key."""


class DataError(NlpLstmError):
    """A corpus file is missing, empty, corrupt or malformed; the message names file and line."""


class ModelPackageError(NlpLstmError):
    """A model directory is missing files or has an unknown format version."""
