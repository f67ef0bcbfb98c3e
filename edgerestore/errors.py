"""User-facing errors. Anything raised as `UserError` reaches the user as one line and a non-zero exit."""


class UserError(Exception):
    """A problem the user can act on (bad input, missing file, wrong bundle). Message: one line, what was
    wrong and what to do."""

    exit_code = 2


class BundleError(UserError):
    """An engine bundle is corrupt, tampered, incomplete or was built for something else."""


class SourceError(UserError):
    """A camera, stream, video or image source cannot be opened or read."""
