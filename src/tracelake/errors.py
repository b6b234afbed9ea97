"""The errors a user can meet, each with a message that says what is wrong.

Every failure that reaches the command line or an HTTP client is one of these, so callers can print one
clear line (or map it to a status code) instead of a traceback.
"""


class TracelakeError(Exception):
    """Base of every error tracelake reports to a user."""


class ConfigError(TracelakeError):
    """The configuration file or an environment override is invalid."""


class InvalidInputError(TracelakeError):
    """Input data (a file, a request body, a trace id) cannot be decoded."""


class InvalidTraceIDError(InvalidInputError):
    """A trace id is not 1 to 32 hex characters.

    ``reason`` ("not hex", "too long", "empty") and ``position`` (1-based, of the first character
    that is not hex) let each surface word the error its own way (the query API answers in Tempo's).
    """

    def __init__(self, message: str, *, reason: str, text: str, position: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.text = text
        self.position = position


class BackendError(TracelakeError):
    """The object store failed or refused a request."""


class ObjectNotFoundError(BackendError):
    """The object store holds no object under the requested key."""


class BackendAuthError(BackendError):
    """The object store refused our credentials."""


class BlockFormatError(TracelakeError):
    """A block is unreadable: unknown format version, corrupt or missing object."""


class BlockReadError(TracelakeError):
    """Reading one block failed: corrupt or truncated data, a format this version cannot read, or the
    store failing mid-read. Names the block, so a caller can leave it aside and go on with others."""

    def __init__(self, message: str, *, tenant: str, block_id: str) -> None:
        super().__init__(message)
        self.tenant = tenant
        self.block_id = block_id


class TraceNotFoundError(TracelakeError):
    """No block holds the requested trace."""


class UnavailableError(TracelakeError):
    """Too few replicas answered to be sure of the result (HTTP 503: the client may retry)."""
