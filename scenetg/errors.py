"""Errors a user can act on: the CLI prints them as one line (traceback only with --debug)."""


class ScenetgError(Exception):
    """A problem with the user's input or setup, reported as one clear line."""


class VideoError(ScenetgError):
    """One video cannot be used (empty, truncated, no video stream, ...).

    The build records it as a per-video error row and goes on with the other videos.
    """


class ModelError(ScenetgError):
    """A model id/path that cannot be loaded (not local, not reachable, wrong kind)."""


class ConfigError(ScenetgError):
    """A config file or value that is invalid."""
