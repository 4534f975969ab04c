"""GemmaDesk's Qt front end.

Everything here is presentation: Qt models over plain Python data, views, and small controllers that
run the core's blocking calls (hardware probe, downloads, inference) off the GUI thread and bring the
result or error back to it. Business rules live in ``gemmadesk.core``.
"""
