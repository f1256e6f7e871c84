from dagrun import stage


@stage
def fine() -> int:
    return 1 +
