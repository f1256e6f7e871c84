"""A stage that fails until its third attempt (counted in a marker file)."""

from pathlib import Path

from dagrun import stage


@stage(retries=3, retry_delay=0.01)
def flaky(marker: Path = Path("attempts.txt"), succeed_at: int = 3) -> int:
    count = int(marker.read_text()) + 1 if marker.exists() else 1
    marker.write_text(str(count))
    if count < succeed_at:
        raise ConnectionError(f"attempt {count} failed")
    return count


@stage(retries=2, retry_on=KeyError)
def picky() -> int:
    raise ValueError("not worth retrying")
