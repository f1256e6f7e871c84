"""Parameters of every supported type, converted from text."""

from pathlib import Path

from dagrun import stage


@stage
def settings(
    count: int = 1,
    ratio: float = 0.5,
    verbose: bool = False,
    label: str = "x",
    where: Path = Path("."),
    sizes: list[int] = [1, 2],  # noqa: B006
) -> dict:
    return {
        "count": count,
        "ratio": ratio,
        "verbose": verbose,
        "label": label,
        "where": where,
        "sizes": sizes,
    }
