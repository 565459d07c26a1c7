"""Where a Request's cookie session travels between the processes: names in its meta.

The jars themselves are the parent's (:mod:`crawler.engine.cookiejars`, which explains how
cookies flow); a worker and a spider only need these names, and importing them must not load
``http.cookiejar`` (and through it ``urllib.request``, ``http.client`` and ``ssl``) into every
process of a crawl.
"""

from __future__ import annotations

__all__ = ["COOKIES_META", "LOGIN_META", "LOGIN_PRIORITY", "SESSION_META"]

# Where a Request's ``session`` and ``cookies`` travel in the frontier row's meta (they must
# survive a redirect hop and a restart, which meta already does).
SESSION_META = "_session"
COOKIES_META = "_cookies"
# Marks the requests of a login (Spider.login() and what their callbacks yield).
LOGIN_META = "_login"
# ...and go first in their host's queue: while a login runs, other Jobs taken from the queue
# are put back, so a login request behind them would never be taken.
LOGIN_PRIORITY = 1 << 30
