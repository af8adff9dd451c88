#!/usr/bin/env python3
"""Which B-trees the frames in a SQLite WAL belong to: one line per table or index with its
share of the frames, from the frame headers and `dbstat` over a copy of the database file.

Capture a round's WAL by running the heartbeat benchmark with its file in a known place and
copying the directory once the first round is done (before the next checkpoint rewrites it):

    target/release/forcelink bench heartbeat-round --connections 10000 --concurrency 128,128 \
        --db-dir /tmp/hb 2>/tmp/hb.log &
    until grep -q "round done" /tmp/hb.log; do sleep 0.1; done; cp -r /tmp/hb /tmp/hb-copy
    bench/wal-pages.py /tmp/hb-copy/*/bench.db

Pages the copy's `dbstat` does not know (allocated after the copy's checkpointed state, or free)
are counted as "new or free". Needs Python's sqlite3 with the dbstat table (Debian's has it).
"""
import collections
import os
import shutil
import sqlite3
import struct
import sys
import tempfile


def frames(wal_path):
    """Page numbers of the WAL's valid frames (those with the header's salt), and commits."""
    with open(wal_path, "rb") as wal:
        data = wal.read()
    if len(data) < 32:
        return [], 0
    _magic, _version, page_size, _seq, salt1, salt2, _c1, _c2 = struct.unpack(">8I", data[:32])
    pages, commits, offset = [], 0, 32
    while offset + 24 + page_size <= len(data):
        page, size_after_commit, s1, s2 = struct.unpack(">4I", data[offset : offset + 16])
        if (s1, s2) != (salt1, salt2):
            break
        pages.append(page)
        commits += 1 if size_after_commit else 0
        offset += 24 + page_size
    return pages, commits


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: wal-pages.py DATABASE_FILE (its -wal beside it)")
    database = sys.argv[1]
    pages, commits = frames(database + "-wal")
    with tempfile.TemporaryDirectory() as scratch:
        copy = os.path.join(scratch, "copy.db")
        shutil.copy(database, copy)
        owner = {page: name for name, page in sqlite3.connect(copy).execute(
            "SELECT name, pageno FROM dbstat")}
    counts = collections.Counter(owner.get(page, "new or free") for page in pages)
    print(f"{len(pages)} frames, {commits} commits, {len(pages) / max(commits, 1):.1f} frames per commit")
    for name, count in counts.most_common():
        print(f"{count:8d} {100 * count / max(len(pages), 1):5.1f} %  {name}")


if __name__ == "__main__":
    main()
