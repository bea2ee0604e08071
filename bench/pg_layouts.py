#!/usr/bin/env python3
"""PostgreSQL storage layouts for dedup on a big table, compared without the server.

Why: on 5 M documents the PostgreSQL dedup row of `make bench BENCH=full` stays below
target 3, and the cause is the layout (docs/performance.md, "The PostgreSQL key lookup
on 5 M documents, measured apart"). Trying a layout in the server means a schema
version, so this script tries them in plain SQL first, on a synthetic database with the
columns, key and id sizes and the indexes of tributary's schema (src/store/pg.c):

  today   entries table (slot index) → documents (pkey); a replace deletes the stored
          version (to history) and writes the new one as a new row
  hot     today's entries; documents at fillfactor 90, a replace updates in place
  digest  the key digest and key in the documents' rows, index (tablet, kh), no
          entries; a replace deletes and writes anew
  digest_hot  the digest in documents at fillfactor 90, a replace updates in place

Two measurements, layouts interleaved on the same keys:
  lookup  the dedup lookup of 1,000 keys (half stored), EXPLAIN (ANALYZE, BUFFERS):
          ms and buffer misses per batch
  write   whole dedup transactions of 1,000 keys (lookup into a scratch table, ended
          versions to history, new versions and entries written, synchronous commit),
          BATCHES per psql session: records/s
The SQL computes its values in the statements, so absolute rates are far below the
server's; compare the layouts with each other only.

Runs on a throwaway cluster with default settings (tests/pgcluster.py), removed at the
end. Usage: python3 bench/pg_layouts.py [--docs 5000000] [--rounds 4] [--batches 150]
"""
import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import pgcluster  # noqa: E402

LAYOUTS = ("today", "hot", "digest", "digest_hot")
NEWID = "int8send(i) || substr(sha256(int8send(i)), 1, 8)"
KEY = "'\\x05'::bytea || int8send(i)"
VALUE = "repeat(md5((i + %d)::text), 9)"
SLOT = "((ix << 40) | (kh & 1099511627775))"


def setup_sql(n):
    docs = ("SELECT 7 AS tablet, %s AS id, i AS ts, i::float8 AS creation_time,"
            " hashtextextended(i::text, 0) AS kh, %s AS key, repeat(md5(i::text), 9) AS value"
            " FROM generate_series(1, %d) i" % (NEWID, KEY, n))
    sql = ["CREATE TABLE src AS " + docs]
    for layout in LAYOUTS:
        digest = layout.startswith("digest")
        ff = " WITH (fillfactor = 90)" if layout.endswith("hot") else ""
        cols = "kh bigint, key bytea," if digest else ""
        sql.append("CREATE TABLE d_%s(tablet bigint NOT NULL, id bytea NOT NULL, ts bigint"
                   " NOT NULL, creation_time float8 NOT NULL, %s value text NOT NULL,"
                   " PRIMARY KEY(tablet, id))%s" % (layout, cols, ff))
        sql.append("INSERT INTO d_%s SELECT tablet, id, ts, creation_time, %s value FROM src"
                   % (layout, "kh, key," if digest else ""))
        if digest:
            sql.append("CREATE INDEX d_%s_kh ON d_%s(tablet, kh)" % (layout, layout))
        else:
            sql.append("CREATE TABLE e_%s AS SELECT 3::bigint AS ix, kh, tablet, id, key"
                       " FROM src" % layout)
            sql.append("CREATE INDEX e_%s_slot ON e_%s(%s)" % (layout, layout, SLOT))
        sql.append("CREATE TABLE h_%s(tablet bigint NOT NULL, id bytea NOT NULL, valid_from"
                   " bigint NOT NULL, valid_to bigint NOT NULL, creation_time float8 NOT NULL,"
                   " value text NOT NULL)" % layout)
        sql.append("CREATE INDEX h_%s_end ON h_%s(valid_to)" % (layout, layout))
    sql.append("DROP TABLE src")
    sql.append("VACUUM ANALYZE")
    return ";\n".join(sql) + ";\n"


def keys_sql(ks):
    return ("(SELECT DISTINCT i, hashtextextended(i::text, 0) AS h, %s AS key"
            " FROM unnest(ARRAY[%s]::int8[]) i) k" % (KEY, ",".join(map(str, ks))))


def lookup_sql(layout, ks):
    """The server's dedup lookup (tr_lookup in src/store/pg.c) in this layout."""
    k = keys_sql(ks)
    if layout.startswith("digest"):
        return ("SELECT k.i, d.id, d.creation_time, d.tid FROM %s CROSS JOIN LATERAL"
                " (SELECT id, creation_time, ctid AS tid FROM d_%s WHERE tablet = 7"
                " AND kh = k.h AND key = k.key OFFSET 0) d" % (k, layout))
    return ("SELECT k.i, x.id, d.creation_time, d.tid FROM %s CROSS JOIN LATERAL"
            " (SELECT id, tablet FROM e_%s WHERE %s = ((3::int8 << 40) | (k.h & 1099511627775))"
            " AND ix = 3 AND kh = k.h AND key = k.key OFFSET 0) x CROSS JOIN LATERAL"
            " (SELECT creation_time, ctid AS tid FROM d_%s WHERE tablet = x.tablet"
            " AND id = x.id OFFSET 0) d" % (k, layout, SLOT, layout))


def write_sql(layout, ks, ts):
    """One dedup batch as one transaction; f is the session's scratch table."""
    arr = "ARRAY[%s]::int8[]" % ",".join(map(str, ks))
    digest, hot = layout.startswith("digest"), layout.endswith("hot")
    value = VALUE % ts
    ended = "ctid = ANY(ARRAY(SELECT tid FROM f))"
    new = "i NOT IN (SELECT i FROM f)"
    out = ["BEGIN",
           "INSERT INTO f SELECT i, id, tid FROM (%s) l" % lookup_sql(layout, ks)]
    if hot:
        out.append("INSERT INTO h_%s SELECT tablet, id, ts, %d, creation_time, value FROM d_%s"
                   " WHERE %s" % (layout, ts, layout, ended))
        out.append("UPDATE d_%s SET ts = %d, value = repeat(md5((ts + %d)::text), 9) WHERE %s"
                   % (layout, ts, ts, ended))
        rows, where = "unnest(%s) i" % arr, "WHERE " + new
        ids = NEWID
    else:
        out.append("WITH m AS (DELETE FROM d_%s WHERE %s RETURNING tablet, id, ts,"
                   " creation_time, value) INSERT INTO h_%s SELECT tablet, id, ts, %d,"
                   " creation_time, value FROM m" % (layout, ended, layout, ts))
        rows, where = "unnest(%s) i LEFT JOIN f USING (i)" % arr, ""
        ids = "COALESCE(f.id, %s)" % NEWID
    extra = "hashtextextended(i::text, 0), %s," % KEY if digest else ""
    out.append("INSERT INTO d_%s SELECT 7, %s, %d, i::float8, %s %s FROM %s %s"
               % (layout, ids, ts, extra, value, rows, where))
    if not digest:
        out.append("INSERT INTO e_%s SELECT 3, hashtextextended(i::text, 0), 7, %s, %s"
                   " FROM unnest(%s) i WHERE %s" % (layout, NEWID, KEY, arr, new))
    out += ["DELETE FROM f", "COMMIT"]
    return ";\n".join(out) + ";\n"


class Bench:
    def __init__(self, cluster, args):
        self.psql = [os.path.join(cluster.bindir, "psql"), cluster.url, "-q", "-v",
                     "ON_ERROR_STOP=1"]
        self.args = args
        self.rng = random.Random(1)
        self.next_new = args.docs + 1
        self.ts = 10 ** 9

    def run(self, sql, **kw):
        return subprocess.run(self.psql + ["-At"], input=sql, text=True, check=True,
                              capture_output=True, **kw).stdout

    def keys(self):
        old = self.rng.sample(range(1, self.args.docs + 1), 500)
        new = list(range(self.next_new, self.next_new + 500))
        self.next_new += 500
        return old + new

    def lookup(self):
        """ms and buffer misses of each layout's lookup, per batch of 1,000 keys."""
        res = {layout: [] for layout in LAYOUTS}
        for b in range(self.args.lookups):
            ks = self.keys()
            order = LAYOUTS if b % 2 == 0 else LAYOUTS[::-1]
            out = self.run("".join("EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) %s;\n"
                                   % lookup_sql(layout, ks) for layout in order))
            pos = 0
            for layout, m in zip(order, re.finditer(r"Execution Time: ([0-9.]+) ms", out)):
                top = re.search(r"Buffers: shared hit=\d+(?: read=(\d+))?", out[pos:m.start()])
                res[layout].append((float(m.group(1)), int(top.group(1) or 0)))
                pos = m.end()
        return res

    def write(self):
        res = {layout: [] for layout in LAYOUTS}
        for r in range(self.args.rounds):
            batches = [self.keys() for _ in range(self.args.batches)]
            for layout in (LAYOUTS if r % 2 == 0 else LAYOUTS[::-1]):
                sql = ("SET synchronous_commit = on;\n"
                       "CREATE TEMP TABLE f(i bigint, id bytea, tid tid);\n")
                for ks in batches:
                    self.ts += 1
                    sql += write_sql(layout, ks, self.ts)
                t0 = time.monotonic()
                self.run(sql)
                res[layout].append(len(batches) * 1000 / (time.monotonic() - t0))
                print("  round %d %-10s %6.0f rec/s" % (r + 1, layout, res[layout][-1]),
                      flush=True)
        return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=5_000_000, help="documents stored first")
    ap.add_argument("--lookups", type=int, default=40, help="lookup batches per layout")
    ap.add_argument("--rounds", type=int, default=4, help="write rounds per layout")
    ap.add_argument("--batches", type=int, default=150, help="transactions per write round")
    args = ap.parse_args()
    pgcluster.interrupt_on_signals()
    with pgcluster.Cluster() as cluster:
        bench = Bench(cluster, args)
        print("loading %d documents into each layout" % args.docs, flush=True)
        bench.run(setup_sql(args.docs), timeout=3600)
        print(bench.run("SELECT relname || ' ' || pg_size_pretty(pg_relation_size(oid))"
                        " FROM pg_class WHERE relname ~ '^(d|e)_' ORDER BY relname"))
        lookups = bench.lookup()
        writes = bench.write()
    skip = 4  # the first lookups of each layout warm its upper index pages
    print("\n| layout | lookup ms per 1,000 keys | buffer misses | write rec/s |")
    print("|---|---:|---:|---:|")
    for layout in LAYOUTS:
        lk = lookups[layout][skip:] or lookups[layout]
        print("| %s | %.1f | %.0f | %.0f |" % (
            layout, statistics.median(t for t, _ in lk), statistics.mean(r for _, r in lk),
            statistics.median(writes[layout])))


if __name__ == "__main__":
    main()
