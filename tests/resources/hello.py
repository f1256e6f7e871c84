"""Three stages: a greeting, its length, and a report that joins both."""

from dagrun import stage


@stage
def greeting(name: str = "world") -> str:
    return f"hello, {name}"


@stage
def length(greeting: str) -> int:
    return len(greeting)


@stage
def report(greeting: str, length: int, shout: bool = False) -> str:
    text = f"{greeting} ({length} characters)"
    return text.upper() if shout else text
