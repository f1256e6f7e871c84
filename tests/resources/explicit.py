"""An explicit Pipeline wins over the stages in the namespace."""

from dagrun import Pipeline, stage


@stage
def kept() -> int:
    return 1


@stage
def ignored() -> int:
    raise RuntimeError("not part of the pipeline")


pipeline = Pipeline([kept], name="explicit")
