#!/usr/bin/env python3
"""Runs tributary's end-to-end suite against one binary and one storage backend.

    python3 tests/e2e/run.py --bin build/tributary [--backend sqlite]
    python3 tests/e2e/run.py --backend postgres --database-url URL [--pg-ctl CMD]
    python3 tests/e2e/run.py --backend postgres   # on a throwaway cluster of its own
    python3 tests/e2e/run.py -k Dedup          # only tests whose id contains "Dedup"

With --backend postgres and no --database-url, a throwaway PostgreSQL cluster is started
for the run (tests/pgcluster.py) and removed afterwards. --pg-ctl is the pg_ctl command
line of the cluster the URL points at, with its -D and -l, e.g. "pg_ctl -D DIR -l LOG";
the tests that restart PostgreSQL skip themselves without it.

The last line printed is exactly `SUITE e2e-<backend>: N passed, N failed`, counting
test methods: an error counts as a failure, a skipped test counts as neither, and
when a class cannot start its server every test of that class counts as failed.
The exit status is 0 only when nothing failed. A watchdog ends a run that hangs, so
CI always gets its summary line.
"""
import argparse
import faulthandler
import os
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.dirname(HERE))

import harness  # noqa: E402
import pgcluster  # noqa: E402

# Run by the watchdog before it ends the process (os._exit skips finally blocks).
CLEANUPS = []


def all_tests(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from all_tests(t)
        else:
            yield t


class CountingResult(unittest.TextTestResult):
    """Keeps one outcome per test method, whatever unittest reports it through."""

    def __init__(self, *args, tests=(), **kw):
        super().__init__(*args, **kw)
        self.by_class = {}
        for t in tests:
            self.by_class.setdefault(type(t).__module__ + "." + type(t).__qualname__,
                                     []).append(t.id())
        self.outcome = {}
        self.durations = {}
        self._started = {}

    def startTest(self, test):
        self._started[test.id()] = time.monotonic()
        super().startTest(test)

    def stopTest(self, test):
        super().stopTest(test)
        if test.id() in self._started:
            self.durations[test.id()] = time.monotonic() - self._started.pop(test.id())

    def slowest(self, n=8):
        return sorted(self.durations.items(), key=lambda kv: -kv[1])[:n]

    def addSuccess(self, test):
        super().addSuccess(test)
        self.outcome.setdefault(test.id(), "passed")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._failed(test)

    def addError(self, test, err):
        super().addError(test, err)
        self._failed(test)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self.outcome.setdefault(test.id(), "skipped")

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            self.outcome[test.id()] = "failed"

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self.outcome.setdefault(test.id(), "passed")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self.outcome[test.id()] = "failed"

    def _failed(self, test):
        if isinstance(test, unittest.TestCase):
            self.outcome[test.id()] = "failed"
            return
        # setUpClass/tearDownClass/module fixtures: "setUpClass (mod.Class)"
        desc = str(test)
        name = desc[desc.find("(") + 1:desc.rfind(")")] if "(" in desc else desc
        ids = self.by_class.get(name)
        if ids is None:  # a module fixture: every class of that module
            ids = [i for cls, lst in self.by_class.items()
                   if cls.startswith(name + ".") for i in lst]
        not_passed = [i for i in ids if self.outcome.get(i) != "passed"]
        for i in not_passed:
            if self.outcome.get(i) != "skipped":
                self.outcome[i] = "failed"
        if not not_passed and ids:
            # the class's tests ran but its teardown failed (e.g. the server crashed
            # or reported a sanitizer error on exit): charge it to its last test
            self.outcome[ids[-1]] = "failed"

    def totals(self, ids):
        passed = sum(1 for i in ids if self.outcome.get(i) == "passed")
        skipped = sum(1 for i in ids if self.outcome.get(i) == "skipped")
        return passed, len(ids) - passed - skipped


def watchdog(limit, label, result_box, ids):
    def fire():
        sys.stdout.write("\nwatchdog: the e2e suite ran longer than %ds; stopping it\n" % limit)
        faulthandler.dump_traceback(file=sys.stdout, all_threads=True)
        harness._kill_leftovers()
        for cleanup in CLEANUPS:
            cleanup()
        result = result_box.get("result")
        passed, failed = result.totals(ids) if result else (0, len(ids))
        failed = max(failed, 1)
        sys.stdout.write("SUITE %s: %d passed, %d failed\n" % (label, passed, failed))
        sys.stdout.flush()
        os._exit(1)
    t = threading.Timer(limit, fire)
    t.daemon = True
    t.start()
    return t


def main():
    args = parse_args()
    label = "e2e-" + args.backend
    pgcluster.interrupt_on_signals()
    if args.backend != "postgres" or args.database_url:
        return run_suite(args, label)
    try:
        cluster = pgcluster.Cluster().start()
    except pgcluster.ClusterError as e:
        print("e2e: the throwaway PostgreSQL cluster did not start: %s" % e)
        print("SUITE %s: 0 passed, 1 failed" % label)
        return 1
    CLEANUPS.append(cluster.stop)
    try:
        args.database_url = cluster.url
        args.pg_ctl = args.pg_ctl or cluster.pg_ctl_shell()
        return run_suite(args, label)
    finally:
        cluster.stop()


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=None, help="the tributary binary (default build/tributary)")
    ap.add_argument("--backend", default="sqlite", choices=["sqlite", "postgres"])
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--pg-ctl", default=None,
                    help="pg_ctl command line of the PostgreSQL cluster, for restart tests")
    ap.add_argument("-k", dest="patterns", action="append", default=[],
                    help="run only tests whose id contains this (repeatable)")
    ap.add_argument("--max-seconds", type=int, default=None,
                    help="watchdog limit for the whole run")
    ap.add_argument("-q", "--quiet", action="store_true")
    return ap.parse_args()


def run_suite(args, label):
    harness.configure(binary=args.bin, backend=args.backend, database_url=args.database_url,
                      pg_ctl=args.pg_ctl)
    loader = unittest.TestLoader()
    suite = loader.discover(HERE, pattern="test_*.py", top_level_dir=HERE)
    if args.patterns:
        def keep(t):
            return any(p in t.id() for p in args.patterns)
        suite = unittest.TestSuite([t for t in all_tests(suite) if keep(t)])
    tests = list(all_tests(suite))
    ids = [t.id() for t in tests if isinstance(t, unittest.TestCase)
           and not t.id().startswith("unittest.loader")]
    # a module that fails to import shows up as a _FailedTest: it counts as failed
    ids += [t.id() for t in tests if t.id().startswith("unittest.loader")]

    if not os.access(harness.Config.binary, os.X_OK):
        print("e2e: no executable binary at %s" % harness.Config.binary)
        print("SUITE %s: 0 passed, %d failed" % (label, max(1, len(ids))))
        return 1

    box = {}
    limit = args.max_seconds or harness.timeout(900)
    dog = watchdog(limit, label, box, ids)

    def make_result(stream, descriptions, verbosity):
        r = CountingResult(stream, descriptions, verbosity, tests=tests)
        box["result"] = r
        return r

    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=1 if args.quiet else 2,
                                     resultclass=make_result)
    started = time.monotonic()
    try:
        result = runner.run(suite)
    finally:
        dog.cancel()
        harness._kill_leftovers()
        harness.close_database_pools()
    passed, failed = result.totals(ids)
    print("slowest tests:")
    for test_id, seconds in result.slowest():
        print("  %6.1fs  %s" % (seconds, test_id))
    print("e2e: %d tests in %.1fs (binary %s, backend %s%s)"
          % (len(ids), time.monotonic() - started, harness.Config.binary, args.backend,
             ", sanitized" if harness.Config.sanitized else ""))
    sys.stdout.flush()
    print("SUITE %s: %d passed, %d failed" % (label, passed, failed))
    sys.stdout.flush()
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
