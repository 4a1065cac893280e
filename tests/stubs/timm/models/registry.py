"""`register_model`: timm keeps a name → factory table; MobileSAM only decorates with it."""

_model_entrypoints = {}


def register_model(fn):
    _model_entrypoints[fn.__name__] = fn
    return fn
