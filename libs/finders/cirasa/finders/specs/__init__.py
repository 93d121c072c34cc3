"""One module per app, each defining ``APP``; listed in ``registry.APP_MODULES``."""
