#!/usr/bin/env python3
"""Unit tests of fleet/ops.py's pure parts: selection, staging, parsing the devices' JSON,
judging an update's outcome, summaries. Run: python3 -m unittest fleet/test_ops.py
(fleet/test-fleet.sh runs them first)."""

import json
import os
import stat
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ops  # noqa: E402

DEVICES = [{"name": "exit-1", "role": "exit"}, {"name": "gw-1", "role": "gateway"},
           {"name": "laptop-1", "role": "client"}, {"name": "laptop-2", "role": "client"}]
GROUPS = {"office": ["gw-1", "laptop-1"], "empty": []}
PK = "ab" * 32


def names(ds):
    return [d["name"] for d in ds]


class SelectTests(unittest.TestCase):
    def test_all_by_default(self):
        self.assertEqual(names(ops.select(DEVICES, GROUPS)), ["exit-1", "gw-1", "laptop-1", "laptop-2"])

    def test_group_keeps_manifest_order(self):
        self.assertEqual(names(ops.select(DEVICES, {"g": ["laptop-1", "exit-1"]}, ["g"])), ["exit-1", "laptop-1"])

    def test_group_and_device_are_a_union_role_filters(self):
        self.assertEqual(names(ops.select(DEVICES, GROUPS, ["office"], [], ["laptop-2"])), ["gw-1", "laptop-1", "laptop-2"])
        self.assertEqual(names(ops.select(DEVICES, GROUPS, ["office"], ["client"])), ["laptop-1"])
        self.assertEqual(names(ops.select(DEVICES, GROUPS, [], ["client", "exit"])), ["exit-1", "laptop-1", "laptop-2"])

    def test_empty_group_selects_nothing(self):
        self.assertEqual(ops.select(DEVICES, GROUPS, ["empty"]), [])

    def test_unknown_names_are_errors(self):
        for kw in ({"want_groups": ["nope"]}, {"want_names": ["laptop-9"]}, {"want_roles": ["server"]}):
            with self.assertRaises(ops.UsageError):
                ops.select(DEVICES, GROUPS, **kw)


class StageTests(unittest.TestCase):
    def test_counts_and_shares(self):
        self.assertEqual(ops.canary_count("1", 10), 1)
        self.assertEqual(ops.canary_count("3", 10), 3)
        self.assertEqual(ops.canary_count("25%", 10), 3)      # rounded up
        self.assertEqual(ops.canary_count("1%", 10), 1)       # at least one
        self.assertEqual(ops.canary_count("100%", 4), 4)
        self.assertEqual(ops.canary_count("50", 4), 4)        # never more than the fleet

    def test_bad_specs(self):
        for bad in ("0", "-1", "0%", "101%", "x", "%", "1.5"):
            with self.assertRaises(ops.UsageError, msg=bad):
                ops.canary_count(bad, 10)

    def test_stages_canary_first_then_rest(self):
        st = ops.stages(DEVICES, "1")
        self.assertEqual([names(s) for s in st], [["exit-1"], ["gw-1", "laptop-1", "laptop-2"]])
        self.assertEqual([names(s) for s in ops.stages(DEVICES, "100%")], [names(DEVICES)])
        self.assertEqual([names(s) for s in ops.stages(DEVICES, "50%")], [["exit-1", "gw-1"], ["laptop-1", "laptop-2"]])


UPDATE_JSON = {"board": "qemu-arm64-ab", "version": "v2", "slot": "B",
               "last_update": {"state": "committed", "slot": "B", "version": "v2", "time": "1700000000"}}
INFO_JSON = {"pk": PK, "version": "0.9.0", "uptime_seconds": 321, "transports": [
    {"remote_pk": "cd" * 32, "state": "up", "type": "stcpr"},
    {"remote_pk": "ef" * 32, "state": "backoff", "type": "sudph"}]}


def answer(update=UPDATE_JSON, info=INFO_JSON, uptime="4000.52 7000.1", end=True):
    parts = [ops.MARK + "update", update if isinstance(update, str) else json.dumps(update),
             ops.MARK + "info", info if isinstance(info, str) else json.dumps(info),
             ops.MARK + "uptime", uptime]
    if end:
        parts.append(ops.MARK + "end")
    return "\n".join(parts) + "\n"


class ParseTests(unittest.TestCase):
    def test_full_answer(self):
        s = ops.parse_status(answer())
        self.assertEqual((s["version"], s["slot"], s["board"], s["update_state"]), ("v2", "B", "qemu-arm64-ab", "committed"))
        self.assertEqual((s["uptime_seconds"], s["visor_uptime_seconds"], s["visor_pk"]), (4000, 321, PK))
        self.assertEqual((s["transports_up"], s["transports"]), (1, 2))
        self.assertTrue(s["complete"])

    def test_image_without_slots(self):
        s = ops.parse_status(answer(update={"board": None, "version": None, "slot": None, "last_update": None}))
        self.assertEqual((s["version"], s["slot"], s["update_state"], s["last_update"]), (None, None, None, None))
        self.assertTrue(s["complete"])

    def test_garbage_and_errors_leave_fields_empty(self):
        s = ops.parse_status(answer(update="skywire cli update status: boom", info="{not json", uptime="", end=False))
        self.assertEqual((s["version"], s["transports"], s["uptime_seconds"]), (None, None, None))
        self.assertFalse(s["complete"])
        self.assertFalse(ops.parse_status("")["complete"])

    def test_warning_before_json_and_wrong_types(self):
        s = ops.parse_status(answer(update="warning: x {\n" + json.dumps(UPDATE_JSON),
                                    info={"pk": 7, "uptime_seconds": "3", "transports": "many"}))
        self.assertEqual(s["version"], "v2")
        self.assertEqual((s["visor_pk"], s["visor_uptime_seconds"], s["transports"]), (None, None, None))

    def test_lines_outside_sections_ignored(self):
        self.assertEqual(ops.split_sections("junk\n" + ops.MARK + "a\nx\ny\n" + ops.MARK + "b\n"), {"a": "x\ny", "b": ""})

    def test_last_seen(self):
        self.assertEqual(ops.last_seen_ms({"pk": PK, "expires_ms": 1_700_000_060_000}, 60), 1_700_000_000_000)
        self.assertIsNone(ops.last_seen_ms({"pk": PK}, 60))
        self.assertIsNone(ops.last_seen_ms({"expires_ms": "soon"}, 60))
        self.assertIsNone(ops.last_seen_ms(None, 60))


def st(version, state=None, last_version=None, reason=None, t="1"):
    last = None
    if state:
        last = {"state": state, "version": last_version or version, "time": t}
        if reason:
            last["reason"] = reason
    return {"version": version, "slot": "A", "board": "b", "last_update": last}


class JudgeTests(unittest.TestCase):
    def test_pending_while_nothing_new(self):
        before = st("v1", "committed", t="1")
        self.assertIsNone(ops.judge(before, None))                  # not answering (rebooting)
        self.assertIsNone(ops.judge(before, st("v1", "committed", t="1")))
        self.assertIsNone(ops.judge(st("v1"), st("v1")))            # first update, nothing yet
        self.assertIsNone(ops.judge(before, st("v1", "failed", "v2", t="2")))   # health check failed: rollback follows

    def test_committed(self):
        self.assertEqual(ops.judge(st("v1"), st("v2", "committed"))[0], ops.RESULT_UPDATED)
        self.assertEqual(ops.judge(st("v1"), st("v2", "committed"), "v2")[0], ops.RESULT_UPDATED)
        r = ops.judge(st("v1"), st("v3", "committed"), "v2")
        self.assertEqual(r[0], ops.RESULT_FAILED)
        self.assertIn("expected v2", r[1])

    def test_rolled_back(self):
        r = ops.judge(st("v1", "committed", t="1"), st("v1", "rolled-back", "v2", "skywire.service not active", t="2"))
        self.assertEqual(r[0], ops.RESULT_ROLLED_BACK)
        self.assertIn("v2 rolled back to v1", r[1])
        self.assertIn("skywire.service not active", r[1])


class CanaryTests(unittest.TestCase):
    def test_only_an_update_or_the_version_already_there_proves_the_canary(self):
        self.assertTrue(ops.canary_proved([{"result": "skipped"}, {"result": "updated"}]))
        self.assertTrue(ops.canary_proved([{"result": "skipped", "already": True}]))
        self.assertFalse(ops.canary_proved([{"result": "skipped", "already": False}]))
        self.assertFalse(ops.canary_proved([]))


class SummaryTests(unittest.TestCase):
    def test_exec_outcomes(self):
        self.assertEqual([ops.exec_outcome(rc) for rc in (0, 1, 3, 127, 124, 255)],
                         ["ok", "failed", "failed", "failed", "timeout", "unreachable"])
        self.assertEqual(ops.exec_outcome(0, timed_out=True), "timeout")

    def test_summarize_counts(self):
        rs = [{"outcome": "ok"}, {"outcome": "failed"}, {"outcome": "ok"}, {"outcome": "unreachable"}]
        self.assertEqual(ops.summarize(rs), {"ok": 2, "failed": 1, "unreachable": 1})

    def test_table_and_age(self):
        self.assertEqual(ops.table(["A", "BB"], [["xyz", None], [1, "q"]]), "A    BB\nxyz  -\n1    q")
        self.assertEqual([ops.age(s) for s in (None, 5, 61, 7200, 90000)], [None, "5s", "1m", "2h", "1d"])

    def test_apply_argv(self):
        class A:
            remote_skywire, from_pk, bundle, url, file = "skywire", PK, "v2.raucb", None, None
        self.assertEqual(ops.apply_argv(A), ["skywire", "cli", "update", "apply", "--from", PK, "--bundle", "v2.raucb"])
        A.from_pk, A.bundle, A.url = None, None, "https://198.51.100.1/b.raucb"
        self.assertEqual(ops.apply_argv(A), ["skywire", "cli", "update", "apply", "https://198.51.100.1/b.raucb"])


class BoundedCaptureTests(unittest.TestCase):
    """A device (or a compromised one) answering `status` with endless output: the owner keeps at
    most MAX_STATUS_BYTES of it and the run ends (the rest is read and dropped, never held)."""

    def test_flood_is_cut_at_the_limit(self):
        with tempfile.TemporaryDirectory() as d:
            fake = os.path.join(d, "skywire")
            # Stands in for the owner's `skywire cli ... pty exec`: 40 MiB on stdout, 8 MiB on stderr.
            with open(fake, "w") as f:
                f.write("#!/bin/sh\nhead -c 8388608 /dev/zero >&2 &\nhead -c 41943040 /dev/zero | tr '\\0' x\nwait\n")
            os.chmod(fake, stat.S_IRWXU)
            t0 = time.monotonic()
            rc, out, err, timed_out = ops.Owner(fake).run(PK, ["true"], 5)
            self.assertEqual((rc, timed_out), (0, False))
            self.assertEqual(len(out), ops.MAX_STATUS_BYTES)
            self.assertEqual(len(err), ops.MAX_STATUS_BYTES)
            self.assertLess(time.monotonic() - t0, 60)


if __name__ == "__main__":
    unittest.main()
