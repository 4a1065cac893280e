from . import layers, registry  # noqa: F401
