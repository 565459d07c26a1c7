"""Item history on PostgreSQL: the SQLite rules (``crawler/store/items.py``, docs/changes.md) on
the same three tables, ``tracked_items``, ``item_versions`` and ``item_changes``.

How this works: ``record()`` calls :meth:`ItemsMixin._track` (or ``_confirm_items`` for an
unchanged page) once per page, in the batch's order and inside the batch's transaction, after
the batch's pages and items are written. Pages go one at a time because the rules depend on
what the pages before wrote: an item that moved to a page recorded later in the same run is
first marked removed, then found again. What an item's JSON is, its hash, which fields changed
and which statuses mean "gone" are imported from the SQLite module, so both backends decide
alike; only the SQL differs (``%s`` placeholders, ``= ANY(array)`` instead of chunked
``IN (...)`` lists).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from crawler.store.items import _hash, changed_fields, item_data
from crawler.store.postgres.connection import Connection

_SELECT = (
    "SELECT key, page_url, hash, data, removed_run, first_seen_run, last_changed_run,"
    " last_seen_run FROM tracked_items"
)
_SEEN = "UPDATE tracked_items SET last_seen_run = %s WHERE page_url = %s AND removed_run IS NULL"


class ItemsMixin(Connection):
    """Tracking keyed items inside ``record()``'s transaction; the change counts of a run."""

    def _track(
        self,
        cur: Any,
        page_url: str,
        run_id: int | None,
        items: Sequence[dict[str, Any]],
        keys: Sequence[str],
        *,
        complete: bool,
    ) -> None:
        """Compare the page's items with the history; ``complete``: the page's callback ran
        cleanly, so tracked items of this page it no longer yields are removed."""
        run = run_id or 0
        latest: dict[str, dict[str, Any]] = {}
        for key, item in zip(keys, items, strict=False):
            latest[key] = item  # a key twice on one page: the last one wins
        # key -> (page_url, hash, data, removed_run, first_seen, last_changed, last_seen)
        cur.execute(f"{_SELECT} WHERE page_url = %s", (page_url,))
        known: dict[str, tuple[Any, ...]] = {row[0]: row[1:] for row in cur.fetchall()}
        elsewhere = [key for key in latest if key not in known]
        if elsewhere:
            cur.execute(f"{_SELECT} WHERE key = ANY(%s)", (elsewhere,))
            known.update((row[0], row[1:]) for row in cur.fetchall())
        inserts: list[tuple[Any, ...]] = []
        moved: list[tuple[Any, ...]] = []
        updates: list[tuple[Any, ...]] = []
        versions: list[tuple[Any, ...]] = []
        changes: list[tuple[Any, ...]] = []
        undo_removed: list[tuple[Any, ...]] = []
        for key, item in latest.items():
            data = item_data(item)
            digest = _hash(data)
            old = known.get(key)
            if old is None:
                inserts.append((key, page_url, digest, data, run, run, run))
                changes.append((run, key, "new", page_url, None, None, data))
                continue
            old_page, old_hash, old_data, removed, first_seen, last_changed, _ = old
            if removed is not None:
                if removed == run:  # moved to a page recorded later in this run: not gone
                    undo_removed.append((run, key))
                else:  # back after a removal: new again, the old version kept
                    versions.append((key, old_hash, old_data, first_seen, run))
                    updates.append((page_url, digest, data, run, run, key))
                    changes.append((run, key, "new", page_url, None, None, data))
                    continue
            if old_hash == digest:
                if old_page != page_url:
                    moved.append((page_url, run, key))
                continue  # seen: the UPDATE by page below
            versions.append((key, old_hash, old_data, last_changed or first_seen, run))
            updates.append((page_url, digest, data, run, run, key))
            diff = changed_fields(json.loads(old_data), json.loads(data))
            fields = json.dumps(diff, ensure_ascii=False, default=str)
            changes.append((run, key, "changed", page_url, fields, old_data, data))
        gone = []
        if complete:
            gone = [
                (run, old[6], key)
                for key, old in known.items()
                if old[0] == page_url
                and old[3] is None
                and key not in latest
                and (old[6] or 0) < run
            ]
        if undo_removed:
            cur.executemany(
                "DELETE FROM item_changes WHERE run_id = %s AND key = %s AND change = 'removed'",
                undo_removed,
            )
            cur.executemany(
                "UPDATE tracked_items SET removed_run = NULL WHERE removed_run = %s AND key = %s",
                undo_removed,
            )
        if inserts:
            cur.executemany(
                "INSERT INTO tracked_items (key, page_url, hash, data, first_seen_run,"
                " last_seen_run, last_changed_run) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                inserts,
            )
        if moved:
            cur.executemany(
                "UPDATE tracked_items SET page_url = %s, last_seen_run = %s WHERE key = %s", moved
            )
        if versions:
            cur.executemany(
                "INSERT INTO item_versions (key, hash, data, first_seen_run, replaced_run)"
                " VALUES (%s, %s, %s, %s, %s)",
                versions,
            )
        if updates:
            cur.executemany(
                "UPDATE tracked_items SET page_url = %s, hash = %s, data = %s,"
                " last_seen_run = %s, last_changed_run = %s, removed_run = NULL WHERE key = %s",
                updates,
            )
        # Everything the page still yields was seen; the gone ones keep their last_seen_run.
        cur.execute(_SEEN, (run, page_url))
        if gone:
            cur.executemany(
                "UPDATE tracked_items SET removed_run = %s, last_seen_run = %s WHERE key = %s",
                gone,
            )
            cur.executemany(
                "INSERT INTO item_changes (run_id, key, change, page_url, old)"
                " VALUES (%s, %s, 'removed', %s, %s)",
                [(run, key, page_url, known[key][2]) for _, _, key in gone],
            )
        if changes:
            cur.executemany(
                "INSERT INTO item_changes (run_id, key, change, page_url, fields, old, new)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                changes,
            )

    def _confirm_items(self, cur: Any, page_url: str, run_id: int | None) -> None:
        """An unchanged page (a 304, the same body): its items are still there."""
        cur.execute(_SEEN, (run_id or 0, page_url))

    def item_change_counts(self, run_id: int) -> dict[str, int]:
        counts = {"new": 0, "changed": 0, "removed": 0}
        with self._read("count the item changes of a run in"):
            for change, n in self.conn.execute(
                "SELECT change, count(*) FROM item_changes WHERE run_id = %s GROUP BY change",
                (run_id,),
            ):
                counts[str(change)] = int(n)
        return counts
