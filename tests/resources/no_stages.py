"""A pipeline file whose functions were never decorated: a run would do nothing."""


def forgot() -> int:
    return 1
