"""Item history: what identifies an item across runs, its versions, and what each run changed.

A spider with ``item_key`` sends each item's key with it (``Outcome.item_keys``, computed in
the worker). For such a spider ``record()`` calls :meth:`ItemsMixin._track` per page, inside
its batch transaction, and three tables keep the history (docs/changes.md)::

    tracked_items   one row per key: the latest version (``data``, JSON, and its ``hash``),
                    the page that yields it, first_seen_run, last_seen_run,
                    last_changed_run, removed_run (NULL while it is there)
    item_versions   each version a change replaced: the old ``data`` and ``hash``, the run
                    it was first seen in and the run that replaced it
    item_changes    per run and key: ``new``, ``changed`` or ``removed``, with the
                    versions before and after (``old``, ``new``: JSON, NULL for none) and
                    for a change the fields that changed (``fields``: {field: [old, new]})

The removal rule: an item is removed only when the page that last yielded it was fetched
again, its callback ran without an error and without refusing an item, and it no longer
yields the key; or the page now answers 404 or 410 (gone, with its items). A page that was
not reached (a budget, a timeout, a failed fetch), answered another error status, or came
back unchanged (a 304: its items are confirmed, ``last_seen_run`` moves) removes nothing.

The hot path stays batched: one SELECT for a page's keys, ``executemany`` for the writes.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from crawler.store.connection import Connection

__all__ = ["GONE_STATUSES", "ItemsMixin", "item_data"]

# A page answering these is gone, with its items (no callback runs on it by default).
GONE_STATUSES = frozenset({404, 410})

_CHUNK = 500  # keys per "IN (...)": well under SQLite's variable limit
_SELECT = (
    "SELECT key, page_url, hash, data, removed_run, first_seen_run, last_changed_run,"
    " last_seen_run FROM tracked_items"
)


def item_data(item: dict[str, Any]) -> str:
    """An item as the JSON text the history keeps (sorted keys: equal items, equal text)."""
    return json.dumps(item, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def _hash(data: str) -> str:
    return hashlib.blake2b(data.encode(), digest_size=16).hexdigest()


def changed_fields(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list[Any]]:
    """``{field: [old, new]}`` for every field whose value differs (a missing one is None)."""
    return {
        name: [old.get(name), new.get(name)]
        for name in sorted(old.keys() | new.keys())
        if old.get(name) != new.get(name)
    }


class ItemsMixin(Connection):
    """Tracking keyed items inside ``record()``'s transaction; the change counts of a run."""

    def _track(
        self,
        conn: sqlite3.Connection,
        page_url: str,
        run_id: int | None,
        items: Sequence[dict[str, Any]],
        keys: Sequence[str],
        *,
        complete: bool,
    ) -> None:
        """Compare the page's items with the history; ``complete``: the page's callback ran
        cleanly, so tracked items of this page it no longer yields are removed.

        The common case (the page yields what it yielded last time) costs one SELECT by page
        and one UPDATE by page; only keys new to this page are looked up one chunk at a time.
        """
        run = run_id or 0
        latest: dict[str, dict[str, Any]] = {}
        for key, item in zip(keys, items, strict=False):
            latest[key] = item  # a key twice on one page: the last one wins
        # key -> (page_url, hash, data, removed_run, first_seen, last_changed, last_seen)
        known: dict[str, tuple[Any, ...]] = {
            row[0]: row[1:] for row in conn.execute(f"{_SELECT} WHERE page_url = ?", (page_url,))
        }
        elsewhere = [key for key in latest if key not in known]
        for start in range(0, len(elsewhere), _CHUNK):
            chunk = elsewhere[start : start + _CHUNK]
            marks = ", ".join("?" * len(chunk))
            for row in conn.execute(f"{_SELECT} WHERE key IN ({marks})", chunk):
                known[row[0]] = row[1:]
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
                    updates.append((page_url, digest, data, run, key))
                    changes.append((run, key, "new", page_url, None, None, data))
                    continue
            if old_hash == digest:
                if old_page != page_url:
                    moved.append((page_url, run, key))
                continue  # seen: the UPDATE by page below
            versions.append((key, old_hash, old_data, last_changed or first_seen, run))
            updates.append((page_url, digest, data, run, key))
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
            conn.executemany(
                "DELETE FROM item_changes WHERE run_id = ? AND key = ? AND change = 'removed'",
                undo_removed,
            )
            conn.executemany(
                "UPDATE tracked_items SET removed_run = NULL WHERE removed_run = ? AND key = ?",
                undo_removed,
            )
        if inserts:
            conn.executemany(
                "INSERT INTO tracked_items (key, page_url, hash, data, first_seen_run,"
                " last_seen_run, last_changed_run) VALUES (?, ?, ?, ?, ?, ?, ?)",
                inserts,
            )
        if moved:
            conn.executemany(
                "UPDATE tracked_items SET page_url = ?, last_seen_run = ? WHERE key = ?", moved
            )
        if versions:
            conn.executemany(
                "INSERT INTO item_versions (key, hash, data, first_seen_run, replaced_run)"
                " VALUES (?, ?, ?, ?, ?)",
                versions,
            )
        if updates:
            conn.executemany(
                "UPDATE tracked_items SET page_url = ?1, hash = ?2, data = ?3, last_seen_run = ?4,"
                " last_changed_run = ?4, removed_run = NULL WHERE key = ?5",
                updates,
            )
        # Everything the page still yields was seen; the gone ones keep their last_seen_run.
        conn.execute(
            "UPDATE tracked_items SET last_seen_run = ? WHERE page_url = ? AND removed_run IS NULL",
            (run, page_url),
        )
        if gone:
            conn.executemany(
                "UPDATE tracked_items SET removed_run = ?, last_seen_run = ? WHERE key = ?", gone
            )
            conn.executemany(
                "INSERT INTO item_changes (run_id, key, change, page_url, old)"
                " VALUES (?, ?, 'removed', ?, ?)",
                [(run, key, page_url, known[key][2]) for _, _, key in gone],
            )
        if changes:
            conn.executemany(
                "INSERT INTO item_changes (run_id, key, change, page_url, fields, old, new)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                changes,
            )

    def _confirm_items(self, conn: sqlite3.Connection, page_url: str, run_id: int | None) -> None:
        """An unchanged page (a 304, the same body): its items are still there."""
        conn.execute(
            "UPDATE tracked_items SET last_seen_run = ? WHERE page_url = ? AND removed_run IS NULL",
            (run_id or 0, page_url),
        )

    def item_change_counts(self, run_id: int) -> dict[str, int]:
        """How many items run ``run_id`` found new, changed and removed."""
        counts = {"new": 0, "changed": 0, "removed": 0}
        for change, n in self.conn.execute(
            "SELECT change, count(*) FROM item_changes WHERE run_id = ? GROUP BY change",
            (run_id,),
        ):
            counts[change] = n
        return counts
