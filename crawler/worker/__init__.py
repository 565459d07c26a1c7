"""A worker process: the job runner, retry rules, body limits, callbacks, reserved callbacks.

Nothing here imports ``crawler.engine`` or ``crawler.store``: a worker gets Jobs and sends
Outcomes (``crawler.messages``), and never touches the database.
"""
