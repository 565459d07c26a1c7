"""The test kit: the servers, projects and checks that tests in every layer share.

Which helper for what:

- A crawl of a small, well-behaved web site (engine, e2e, cli, robots): the ``site`` fixture,
  a ``site.Site``: ``site.add_host("127.0.0.2", routes)`` serves a dict of routes on a
  127.0.0.x address (HTTP or HTTPS) and records every request. Built on ``http.server``.
- A server that breaks HTTP on purpose (the pool's and the worker's fault tests, the engine
  against hostile hosts): the ``server`` fixture, a ``servers.MisbehavingServer`` whose request
  path picks a scenario (reset, trickle, bomb, redirect loop, ...: listed in its docstring).
  To count connections per host: ``concurrency_server``, a ``servers.ConcurrencyServer``.
  A port whose connect times out: ``servers.unresponsive_listener()``.
- A pool on one of those servers, and the end of every fault test: ``pools.make_pool``,
  ``pools.assert_cause`` (the error, raised or wrapped in MaxRetryError),
  ``pools.assert_healthy`` (no slot lost).
- A crawl and its database: ``crawl.page`` (an HTML page), ``crawl.TitleSpider`` (one item
  per page, follows links), ``crawl.rows`` (SQL on the crawl's file or ``postgresql://``
  database), ``crawl.rows_so_far`` (while another process may still be creating it),
  ``crawl.tables`` (the database's table names, either backend),
  ``crawl.assert_crawled_once`` (every page stored once, nothing left to do),
  ``crawl.spawn_crawl`` (a crawl in a child process in its own session, to kill or signal).
- The command line: ``project.make_project`` (a user's spiders/ folder), ``project.invoke``
  (``crawler ARGS`` in process), ``project.subprocess_env`` (for ``python -m crawler``),
  ``project.REPO`` (the repository root).
- A real PostgreSQL: the session fixture ``postgres``, a ``postgres.PostgresServer`` (Debian's
  ``initdb`` + ``pg_ctl`` into a temp dir, as the ``postgres`` user when run as root);
  ``postgres.database()`` gives a test its own database URL, ``postgres.restart()`` is
  ``pg_ctl restart -m immediate``. ``crawl_db("name")`` (a fixture parametrized over both
  backends) is a SQLite file or such a URL, for the backend-neutral crawl tests.
- Other processes: ``processes.child_pids`` (a crawl's workers), ``processes.python_output``
  (a value computed in a fresh interpreter).

The fixtures themselves (``site``, ``server``, ``concurrency_server``) are in
tests/conftest.py. Two libraries stand beside the kit on purpose: ``pytest-httpserver``
(werkzeug) in tests/http/, so the pool is also checked against a server we did not write, and
``trustme`` for test certificates.
"""
