"""A stage with a Secret parameter: converted like its type, masked when written down."""

from __future__ import annotations

from dagrun import Secret, stage


@stage
def connect(token: Secret[str] = "default-token", port: Secret[int] = 5432,
            host: str = "localhost") -> str:
    """What the stage received: the plain values."""
    return f"{type(token).__name__}:{token}@{host}:{port + 1}"
