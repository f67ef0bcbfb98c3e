"""User-facing errors. Anything raised as `UserError` reaches the user as one line and a non-zero exit."""


class UserError(Exception):
    """A problem the user can act on (bad input, missing file, wrong bundle). Message: one line, what was
    wrong and what to do."""

    exit_code = 2


class BundleError(UserError):
    """An engine bundle is corrupt, tampered, incomplete or was built for something else."""


class SourceError(UserError):
    """A camera, stream, video or image source cannot be opened or read."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (or SIGHUP), raised like Ctrl-C so that every `finally:` finalises its outputs, but reported as
    what it was. `signal_name`: "SIGTERM"."""

    def __init__(self, signal_name: str = "SIGTERM") -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


def raise_terminated(signum: int, frame: object) -> None:
    """A signal handler: `signal.signal(signal.SIGTERM, raise_terminated)`."""
    import signal

    raise Terminated(signal.Signals(signum).name)


def first_line(exc: BaseException) -> str:
    """`Type: first line of the message`, for an unexpected exception reported in one line."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
