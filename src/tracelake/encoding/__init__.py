"""Block format versions, one package each (as Tempo's ``encoding/<version>/``)."""

from __future__ import annotations

from tracelake.block.meta import FORMAT_V1, KNOWN_FORMATS
from tracelake.errors import BlockFormatError

CURRENT_FORMAT = FORMAT_V1


def check_format(version: str, where: str) -> None:
    if version not in KNOWN_FORMATS:
        raise BlockFormatError(
            f"{where}: block format {version!r} is not supported "
            f"(this tracelake reads {', '.join(KNOWN_FORMATS)})"
        )
