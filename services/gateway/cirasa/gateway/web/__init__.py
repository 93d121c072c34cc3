"""The web page and the API it and the CLI share (``/cirasa/api/v1``)."""
