#!/usr/bin/env python3
"""fleet/ops.py: operations on a provisioned fleet (docs/fleet.md, "Operations").

    fleet/fleet.py status MANIFEST [-o OUT] [--group G] [--role R] [--device N] [--json]
    fleet/fleet.py exec   MANIFEST [...] [--parallel N] [--timeout S] [--out DIR] -- CMD ARGS...
    fleet/fleet.py update MANIFEST [...] --from PK [--bundle NAME] | --url URL | --file PATH
                                   [--canary N|P%] [--version V] [--wait S]

Every operation runs on the owner's host and reaches the devices through the owner's own visor:
`skywire cli [--rpc SOCK] [-c CONFIG] pty exec PK -- ...` (docs/pty.md). The devices' pty app must
admit the owner's key: `"app_trusts": {"pty": ["<owner pk>"]}` in the manifest (or in its
`defaults`). Device keys come from OUT/keys/<name>.pk (written by `fleet/fleet.py MANIFEST -o OUT`).

The pure parts (selection, staging, parsing the devices' JSON, judging an update's outcome,
summaries, tables) are functions without I/O, unit-tested by fleet/test_ops.py.
Python 3 standard library only.
"""

import argparse
import importlib.util
import json
import math
import os
import shlex
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor


def _load_fleet():
    """fleet/fleet.py (the manifest's validation, by path: `fleet` may also name this directory)."""
    spec = importlib.util.spec_from_file_location("fleet_manifest", os.path.join(os.path.dirname(os.path.abspath(__file__)), "fleet.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


fleet = _load_fleet()

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2
# `skywire cli pty exec` exits 255 when the session could not run (refused, no transport,
# remote error), 124 after its --timeout (docs/pty.md).
PTY_NO_SESSION = 255
PTY_TIMED_OUT = 124
# The cli's own dial bound (stream to the device), at most this (its default).
MAX_DIAL_TIMEOUT = 20
# Extra seconds given to the local cli beyond the remote command's --timeout before it is killed.
KILL_GRACE = 10
DEFAULT_TIMEOUT = 30
DEFAULT_PARALLEL = 8
DEFAULT_STATUS_TIMEOUT = 20
DEFAULT_APPLY_TIMEOUT = 1800
DEFAULT_REBOOT_TIMEOUT = 30
DEFAULT_WAIT = 900
DEFAULT_POLL = 10
DEFAULT_CANARY = "1"
# Bytes of a device's answer to `status` read at most (its JSON is a few KiB).
MAX_STATUS_BYTES = 1 << 20
# Bytes of a discovery answer read at most (an entry is < 1 KiB).
MAX_DISCOVERY_BYTES = 64 << 10
DISCOVERY_TIMEOUT = 5
# Lines of a device's output longer than this are cut into pieces when prefixed.
MAX_LINE = 64 << 10
MS = 1000
REASON_CHARS = 300

# Section markers of the status script's output.
MARK = "@@fleet-status:"
STATUS_SCRIPT = (
    'S=$1; '
    f'echo "{MARK}update"; "$S" cli update status --json 2>&1; '
    f'echo "{MARK}info"; "$S" cli visor info --json 2>&1; '
    f'echo "{MARK}uptime"; cat /proc/uptime 2>&1; '
    f'echo "{MARK}end"'
)

RESULT_UPDATED = "updated"
RESULT_ROLLED_BACK = "rolled-back"
RESULT_FAILED = "failed"
RESULT_SKIPPED = "skipped"


class UsageError(Exception):
    """A bad selection, option or missing key: exit status 2."""


def log(msg):
    print(f"fleet: {msg}", file=sys.stderr, flush=True)


# --- pure: selection and staging ------------------------------------------------------

def select(devices, groups, want_groups=(), want_roles=(), want_names=()):
    """Devices (manifest order) in any of want_groups or want_names (all when neither is given),
    then only those of want_roles (when given). Unknown groups, names or roles are UsageError."""
    names = [d["name"] for d in devices]
    for g in want_groups:
        if g not in groups:
            raise UsageError(f"no group named '{g}' (groups: {', '.join(sorted(groups)) or 'none'})")
    for n in want_names:
        if n not in names:
            raise UsageError(f"no device named '{n}'")
    for r in want_roles:
        if r not in fleet.ROLES:
            raise UsageError(f"'{r}' is not a role ({', '.join(fleet.ROLES)})")
    if want_groups or want_names:
        chosen = set(want_names)
        for g in want_groups:
            chosen.update(groups[g])
        out = [d for d in devices if d["name"] in chosen]
    else:
        out = list(devices)
    if want_roles:
        out = [d for d in out if d["role"] in want_roles]
    return out


def canary_count(spec, total):
    """`--canary N` (a count) or `P%` (a share, rounded up, at least 1) of `total` devices."""
    s = str(spec).strip()
    try:
        if s.endswith("%"):
            p = float(s[:-1])
            if not 0 < p <= 100:
                raise ValueError
            n = math.ceil(total * p / 100)
        else:
            n = int(s)
            if n < 1:
                raise ValueError
    except ValueError:
        raise UsageError(f"--canary {spec!r}: a count >= 1 or a share 0 < P% <= 100") from None
    return max(1, min(n, total)) if total else 0


def stages(devices, spec):
    """The rollout's stages: the canary share first (manifest order), then the rest."""
    n = canary_count(spec, len(devices))
    return [s for s in (devices[:n], devices[n:]) if s]


# --- pure: parsing the devices' answers ---------------------------------------------------

def split_sections(text):
    """The status script's output -> {section: text} (only the marked sections)."""
    out, cur = {}, None
    for line in text.splitlines():
        if line.startswith(MARK):
            cur = line[len(MARK):].strip()
            out[cur] = []
        elif cur is not None:
            out[cur].append(line)
    return {k: "\n".join(v) for k, v in out.items()}


def json_object(text):
    """The first JSON object in `text` (a cli may print warnings before it), or None."""
    i = text.find("{")
    while i >= 0:
        try:
            v, _ = json.JSONDecoder().raw_decode(text, i)
            if isinstance(v, dict):
                return v
        except ValueError:
            pass
        i = text.find("{", i + 1)
    return None


def parse_update_status(text):
    """`skywire cli update status --json` -> {board, version, slot, last_update} (None on garbage)."""
    v = json_object(text or "")
    if v is None:
        return None
    last = v.get("last_update")
    return {"board": v.get("board") if isinstance(v.get("board"), str) else None,
            "version": v.get("version") if isinstance(v.get("version"), str) else None,
            "slot": v.get("slot") if isinstance(v.get("slot"), str) else None,
            "last_update": {str(k): str(x) for k, x in last.items()} if isinstance(last, dict) else None}


def parse_status(text):
    """A device's answer to the status script -> the facts it reports (missing ones None)."""
    sec = split_sections(text)
    upd = parse_update_status(sec.get("update", ""))
    info = json_object(sec.get("info", "")) or {}
    tps = info.get("transports") if isinstance(info.get("transports"), list) else None
    uptime = None
    try:
        uptime = int(float(sec.get("uptime", "").split()[0]))
    except (IndexError, ValueError):
        pass
    last = (upd or {}).get("last_update") or {}
    return {
        "version": (upd or {}).get("version"),
        "board": (upd or {}).get("board"),
        "slot": (upd or {}).get("slot"),
        "update_state": last.get("state"),
        "last_update": (upd or {}).get("last_update"),
        "uptime_seconds": uptime,
        "visor_pk": info.get("pk") if isinstance(info.get("pk"), str) else None,
        "visor_version": info.get("version") if isinstance(info.get("version"), str) else None,
        "visor_uptime_seconds": info.get("uptime_seconds") if isinstance(info.get("uptime_seconds"), int) else None,
        "transports_up": sum(1 for t in tps if isinstance(t, dict) and t.get("state") == "up") if tps is not None else None,
        "transports": len(tps) if tps is not None else None,
        "complete": upd is not None and bool(info) and "end" in sec,
    }


def last_seen_ms(entry, ttl_seconds):
    """A discovery transport entry (GET /v1/transports/PK) -> when it was last written (Unix ms):
    entries expire `ttl` after their last write (docs/discovery.md, "Resources")."""
    exp = entry.get("expires_ms") if isinstance(entry, dict) else None
    if not isinstance(exp, int) or not isinstance(ttl_seconds, int):
        return None
    return exp - ttl_seconds * MS


def judge(before, after, want_version=None):
    """An update's outcome from the device's `update status` before the apply and now:
    (result, reason), or None while it is still pending (no new outcome recorded yet).
    A new outcome is a last_update different from the one before."""
    if after is None:
        return None
    old_last = (before or {}).get("last_update")
    last = after.get("last_update")
    if not last or last == old_last:
        return None
    state = last.get("state")
    if state == "committed":
        running = after.get("version")
        if want_version and running != want_version:
            return RESULT_FAILED, f"committed {running}, expected {want_version}"
        return RESULT_UPDATED, f"committed slot {after.get('slot') or last.get('slot') or '?'} ({running})"
    if state == "rolled-back":
        why = last.get("reason", "")
        return RESULT_ROLLED_BACK, (f"{last.get('version') or 'the update'} rolled back to "
                                    f"{after.get('version') or '?'}" + (f": {why}" if why else ""))
    return None   # "failed": the health check failed; the board reboots and reports the rollback


def canary_proved(rows):
    """Whether the canary stage shows the bundle works: some canary device updated, or already
    runs the version (a skipped, unreachable canary proves nothing)."""
    return any(r["result"] == RESULT_UPDATED or (r["result"] == RESULT_SKIPPED and r.get("already")) for r in rows)


def exec_outcome(rc, timed_out=False):
    """`pty exec`'s exit status -> ok / failed / unreachable / timeout (docs/pty.md)."""
    if timed_out or rc == PTY_TIMED_OUT:
        return "timeout"
    if rc == 0:
        return "ok"
    if rc == PTY_NO_SESSION:
        return "unreachable"
    return "failed"


def summarize(results, key="outcome"):
    """{outcome: count} over per-device results, in first-seen order."""
    out = {}
    for r in results:
        out[r[key]] = out.get(r[key], 0) + 1
    return out


def table(header, rows):
    """A plain text table (columns padded to their widest cell)."""
    cells = [[str(c) for c in header]] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


def age(seconds):
    """Seconds -> a short human duration (45s, 12m, 3h, 2d)."""
    if seconds is None:
        return None
    s = int(seconds)
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= n:
            return f"{s // n}{unit}"
    return f"{s}s"


def tail(text, n=REASON_CHARS):
    t = " ".join((text or "").split())
    return t if len(t) <= n else "…" + t[-n:]


# --- the owner's visor ------------------------------------------------------------------------

def wait_bounded(p, timeout, readers):
    """Waits for a local `pty exec` (its remote --timeout, its dial bound, a grace), kills it
    beyond that; then for its output readers. True when it had to be killed."""
    timed_out = False
    try:
        p.wait(timeout + MAX_DIAL_TIMEOUT + KILL_GRACE)
    except subprocess.TimeoutExpired:
        timed_out = True
        p.kill()
        p.wait()
    for t in readers:
        t.join(KILL_GRACE)
    return timed_out


class Owner:
    """Runs `skywire cli` against the owner's visor (control socket `--rpc`, or `-c CONFIG`)."""

    def __init__(self, skywire, rpc=None, config=None):
        self.skywire, self.rpc, self.config = skywire, rpc, config

    def cli(self):
        argv = [self.skywire, "cli"]
        if self.rpc:
            argv += ["--rpc", self.rpc]
        if self.config:
            argv += ["-c", self.config]
        return argv

    def pty_argv(self, pk, argv, timeout):
        dial = max(1, min(MAX_DIAL_TIMEOUT, int(timeout)))
        return self.cli() + ["pty", "exec", pk, "--timeout", str(int(timeout)), "--dial-timeout", str(dial), "--"] + list(argv)

    def run(self, pk, argv, timeout, limit=MAX_STATUS_BYTES):
        """Runs argv on the device, output captured (at most `limit` bytes each):
        (rc, stdout, stderr, timed_out)."""
        p = subprocess.Popen(self.pty_argv(pk, argv, timeout), stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        bufs = {}

        def read(name, f):
            data = f.read(limit)
            while f.read(MAX_LINE):           # drain beyond the limit so the command is never held
                pass
            bufs[name] = data.decode(errors="replace")

        ts = [threading.Thread(target=read, args=(n, f), daemon=True) for n, f in (("out", p.stdout), ("err", p.stderr))]
        for t in ts:
            t.start()
        timed_out = wait_bounded(p, timeout, ts)
        return p.returncode, bufs.get("out", ""), bufs.get("err", ""), timed_out


class Discovery:
    """Reads transport entries from the discovery service (`transport.discovery`), unsigned GETs."""

    def __init__(self, url):
        self.url = url.rstrip("/")
        self.ttl = None
        self.error = None

    def get(self, path):
        try:
            with urllib.request.urlopen(self.url + path, timeout=DISCOVERY_TIMEOUT) as r:
                return r.status, json.loads(r.read(MAX_DISCOVERY_BYTES) or b"null")
        except urllib.error.HTTPError as e:
            return e.code, None
        except (OSError, ValueError) as e:
            return None, str(e)

    def load_ttl(self):
        status, body = self.get("/v1/info")
        if status == 200 and isinstance(body, dict) and isinstance(body.get("ttl"), int):
            self.ttl = body["ttl"]
        else:
            self.error = f"{self.url}/v1/info: {body if status is None else f'HTTP {status}'}"

    def last_seen(self, pk):
        """(Unix ms of the entry's last write, or None; 'registered' | 'not registered' | error)."""
        if self.ttl is None:
            return None, self.error or "no ttl"
        status, body = self.get(f"/v1/transports/{pk}")
        if status == 200:
            return last_seen_ms(body, self.ttl), "registered"
        if status == 404:
            return None, "not registered"
        return None, body if status is None else f"HTTP {status}"


# --- the fleet ----------------------------------------------------------------------------------

def load_fleet(manifest, out):
    """The manifest's devices (validated as fleet.py does) with their public keys from OUT/keys."""
    m = fleet.Manifest(manifest)
    devices = m.validate(fleet.load_boards(), fleet.load_overlays())
    if m.errors:
        for e in m.errors:
            print(f"fleet: error: {e}", file=sys.stderr)
        raise UsageError(f"{len(m.errors)} error(s) in the manifest")
    groups = {g: list(v) for g, v in m.data.get("groups", {}).items()}
    keys = os.path.join(out, "keys")
    for d in devices:
        f = os.path.join(keys, f"{d['name']}.pk")
        try:
            pk = fleet.read_text(f)
        except OSError:
            raise UsageError(f"{f}: no key for device '{d['name']}' (run `fleet/fleet.py {manifest} -o {out}` first)") from None
        if not fleet.PK_RE.match(pk):
            raise UsageError(f"{f}: not a public key")
        d["pk"] = pk
    return devices, groups


def discovery_url(args):
    if args.discovery:
        return args.discovery
    if args.config:
        try:
            with open(args.config, encoding="utf-8") as f:
                return (json.load(f).get("transport") or {}).get("discovery") or None
        except (OSError, ValueError) as e:
            log(f"warning: {args.config}: {e}; no discovery")
    return None


def device_status(owner, disc, d, args):
    t0 = time.monotonic()
    rc, out, err, timed_out = owner.run(d["pk"], ["sh", "-c", STATUS_SCRIPT, "fleet-status", args.remote_skywire], args.timeout)
    row = {"name": d["name"], "role": d["role"], "pk": d["pk"]}
    facts = parse_status(out) if rc == 0 and not timed_out else None
    row["reachable"] = facts is not None
    row["error"] = None if facts is not None else ("no answer within the bound" if timed_out else tail(err) or f"exit {rc}")
    row.update(facts or {k: None for k in parse_status("")})
    row["answer_seconds"] = round(time.monotonic() - t0, 1)
    seen, reg = disc.last_seen(d["pk"]) if disc else (None, None)
    row["discovery"] = reg
    row["last_seen_unix_ms"] = seen
    row["last_seen_seconds_ago"] = max(0, int(time.time() - seen / MS)) if seen else None
    return row


def cmd_status(args, owner, devices):
    url = discovery_url(args)
    disc = Discovery(url) if url else None
    if disc:
        disc.load_ttl()
    with ThreadPoolExecutor(max_workers=args.parallel) as ex:
        rows = list(ex.map(lambda d: device_status(owner, disc, d, args), devices))
    if args.json:
        print(json.dumps({"devices": rows, "discovery": url}, indent=2, sort_keys=True))
    else:
        print(table(["NAME", "ROLE", "REACH", "VERSION", "SLOT", "UPDATE", "UPTIME", "TP UP", "LAST SEEN", "PK"],
                    [[r["name"], r["role"], "up" if r["reachable"] else "unreachable", r["version"], r["slot"],
                      r["update_state"], age(r["uptime_seconds"]),
                      None if r["transports"] is None else f"{r['transports_up']}/{r['transports']}",
                      (age(r["last_seen_seconds_ago"]) + " ago") if r["last_seen_seconds_ago"] is not None else r["discovery"],
                      r["pk"][:16]] for r in rows]))
        for r in rows:
            if not r["reachable"]:
                log(f"{r['name']}: unreachable: {r['error']}")
    return EXIT_OK if all(r["reachable"] for r in rows) else EXIT_SOME_FAILED


# --- exec ---------------------------------------------------------------------------------------

class Printer:
    """Writes device output line by line, prefixed by the device name; one lock for all devices."""

    def __init__(self):
        self.lock = threading.Lock()

    def copy(self, name, src, dst):
        while True:
            line = src.readline(MAX_LINE)
            if not line:
                return
            with self.lock:
                dst.buffer.write(name.encode() + b": " + line + (b"" if line.endswith(b"\n") else b"\n"))
                dst.buffer.flush()


def device_exec(owner, printer, d, args, out_stream):
    t0 = time.monotonic()
    argv = owner.pty_argv(d["pk"], args.command, args.timeout)
    if args.out_dir:
        fo = open(os.path.join(args.out_dir, f"{d['name']}.out"), "wb")
        fe = open(os.path.join(args.out_dir, f"{d['name']}.err"), "wb")
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fo, stderr=fe)
        threads = []
    else:
        fo = fe = None
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        threads = [threading.Thread(target=printer.copy, args=(d["name"], p.stdout, out_stream), daemon=True),
                   threading.Thread(target=printer.copy, args=(d["name"], p.stderr, sys.stderr), daemon=True)]
        for t in threads:
            t.start()
    timed_out = wait_bounded(p, args.timeout, threads)
    for f in (fo, fe):
        if f:
            f.close()
    return {"name": d["name"], "pk": d["pk"], "exit": p.returncode, "outcome": exec_outcome(p.returncode, timed_out),
            "seconds": round(time.monotonic() - t0, 1)}


def cmd_exec(args, owner, devices):
    if not args.command:
        raise UsageError("exec: no command (fleet/fleet.py exec MANIFEST [options] -- CMD ARGS...)")
    if args.out_dir:
        os.makedirs(args.out_dir, mode=0o700, exist_ok=True)
    printer = Printer()
    # With --json the summary is stdout, so the devices' output goes to stderr.
    out_stream = sys.stderr if args.json else sys.stdout
    with ThreadPoolExecutor(max_workers=args.parallel) as ex:
        results = list(ex.map(lambda d: device_exec(owner, printer, d, args, out_stream), devices))
    counts = summarize(results)
    if args.json:
        print(json.dumps({"devices": results, "summary": counts}, indent=2, sort_keys=True))
    else:
        print(table(["NAME", "RESULT", "EXIT", "SECONDS"], [[r["name"], r["outcome"], r["exit"], r["seconds"]] for r in results]),
              file=sys.stderr)
    log("exec: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
    return EXIT_OK if all(r["outcome"] == "ok" for r in results) else EXIT_SOME_FAILED


# --- update -------------------------------------------------------------------------------------

def apply_argv(args):
    """The device's `skywire cli update apply ...` for --from PK [--bundle NAME] | --url URL | --file PATH."""
    a = [args.remote_skywire, "cli", "update", "apply"]
    if args.from_pk:
        a += ["--from", args.from_pk] + (["--bundle", args.bundle] if args.bundle else [])
    else:
        a.append(args.url or args.file)
    return a


def poll_status(owner, d, args):
    rc, out, _, timed_out = owner.run(d["pk"], [args.remote_skywire, "cli", "update", "status", "--json"], args.status_timeout)
    return parse_update_status(out) if rc == 0 and not timed_out else None


def device_update(owner, d, args, stop):
    """One device: status, apply, reboot, wait for the outcome. Returns its report row."""
    t0 = time.monotonic()
    row = {"name": d["name"], "pk": d["pk"], "from_version": None, "to_version": None, "result": None, "reason": None,
           "already": False}

    def done(result, reason):
        row.update(result=result, reason=reason, seconds=round(time.monotonic() - t0, 1))
        log(f"{d['name']}: {result}: {reason}")
        return row

    if stop.is_set():
        return done(RESULT_SKIPPED, "rollout stopped")
    before = poll_status(owner, d, args)
    if before is None:
        return done(RESULT_SKIPPED, "unreachable (no update status)")
    row["from_version"] = before.get("version")
    last = before.get("last_update") or {}
    if args.version and before.get("version") == args.version and last.get("state") in (None, "committed"):
        row["already"] = True
        return done(RESULT_SKIPPED, f"already runs {args.version}")
    log(f"{d['name']}: applying ({' '.join(apply_argv(args)[1:])})")
    rc, out, err, timed_out = owner.run(d["pk"], apply_argv(args), args.apply_timeout)
    if args.out_dir:
        with open(os.path.join(args.out_dir, f"{d['name']}.apply.log"), "w", encoding="utf-8") as f:
            f.write(out + err)
    if rc != 0 or timed_out:
        return done(RESULT_FAILED, f"apply: {'no answer within the bound' if timed_out else f'exit {rc}'}: {tail(err or out)}")
    # The session may end with the reboot (exit 255): only the outcome reported afterwards counts.
    owner.run(d["pk"], shlex.split(args.reboot_cmd), DEFAULT_REBOOT_TIMEOUT)
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline:
        time.sleep(min(args.poll, max(0.0, deadline - time.monotonic())))
        now = poll_status(owner, d, args)
        verdict = judge(before, now, args.version)
        if verdict:
            row["to_version"] = now.get("version")
            return done(*verdict)
    return done(RESULT_FAILED, f"no committed update or rollback reported within {args.wait} s")


def cmd_update(args, owner, devices):
    plan = stages(devices, args.canary)
    if args.out_dir:
        os.makedirs(args.out_dir, mode=0o700, exist_ok=True)
    stop = threading.Event()
    rows = []
    for i, stage in enumerate(plan):
        log(f"update: stage {i + 1}/{len(plan)} ({'canary' if i == 0 and len(plan) > 1 else 'rest'}): "
            f"{', '.join(d['name'] for d in stage)}")

        def one(d):
            r = device_update(owner, d, args, stop)
            if r["result"] in (RESULT_FAILED, RESULT_ROLLED_BACK):
                stop.set()                     # devices not yet started are skipped
            return r
        with ThreadPoolExecutor(max_workers=args.parallel) as ex:
            done_rows = list(ex.map(one, stage))
        rows += done_rows
        if i == 0 and len(plan) > 1 and not stop.is_set() and not canary_proved(done_rows):
            log("update: no canary device was updated (all skipped): the rest is not started")
            stop.set()
    counts = summarize(rows, "result")
    if args.json:
        print(json.dumps({"devices": rows, "stopped": stop.is_set(), "summary": counts}, indent=2, sort_keys=True))
    else:
        print(table(["NAME", "RESULT", "FROM", "TO", "SECONDS", "REASON"],
                    [[r["name"], r["result"], r["from_version"], r["to_version"], r["seconds"], r["reason"]] for r in rows]))
    log("update: " + ", ".join(f"{n} {k}" for k, n in counts.items()) + ("; stopped after a failure" if stop.is_set() else ""))
    bad = any(r["result"] in (RESULT_FAILED, RESULT_ROLLED_BACK) for r in rows)
    return EXIT_SOME_FAILED if bad or stop.is_set() else EXIT_OK


# --- command line --------------------------------------------------------------------------------

def parser():
    ap = argparse.ArgumentParser(prog="fleet/fleet.py", description="Operations on a provisioned fleet (docs/fleet.md).")
    sub = ap.add_subparsers(dest="op", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("manifest")
    common.add_argument("-o", "--fleet-out", dest="fleet_out", default=os.path.join(fleet.REPO, "out", "fleet"),
                        help="the fleet's output directory, as fleet.py -o (its keys/; default out/fleet)")
    common.add_argument("--group", action="append", default=[], help="only this group's devices (repeatable)")
    common.add_argument("--role", action="append", default=[], help="only devices of this role (repeatable)")
    common.add_argument("--device", action="append", default=[], help="only this device (repeatable)")
    common.add_argument("--skywire", default=os.environ.get("HOST_SKYWIRE_BIN") or "skywire",
                        help="the owner's skywire binary (default: $HOST_SKYWIRE_BIN, else skywire on PATH)")
    common.add_argument("--rpc", help="the owner visor's control socket (skywire cli --rpc)")
    common.add_argument("--config", help="the owner visor's config (skywire cli -c; its transport.discovery)")
    common.add_argument("--remote-skywire", default="skywire", help="skywire on the devices (default: skywire, i.e. /usr/bin/skywire)")
    common.add_argument("--parallel", type=int, help=f"devices at once (default {DEFAULT_PARALLEL}; update: 1)")
    common.add_argument("--json", action="store_true", help="print JSON")

    s = sub.add_parser("status", parents=[common], help="version, slot, update state, uptime, transports, last seen")
    s.add_argument("--timeout", type=int, default=DEFAULT_STATUS_TIMEOUT, help="seconds a device has to answer")
    s.add_argument("--discovery", help="discovery URL (default: transport.discovery of --config)")

    e = sub.add_parser("exec", parents=[common], help="run a command on every selected device")
    e.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT, help="seconds per device (pty exec --timeout)")
    e.add_argument("--out", dest="out_dir", metavar="DIR", help="save DIR/<name>.out and DIR/<name>.err instead of printing")

    u = sub.add_parser("update", parents=[common], help="staged rollout of a signed bundle")
    src = u.add_mutually_exclusive_group(required=True)
    src.add_argument("--from", dest="from_pk", metavar="PK", help="the visor serving the bundle over the mesh")
    src.add_argument("--url", help="http(s) URL of the bundle (the devices fetch it)")
    src.add_argument("--file", help="path of the bundle on each device")
    u.add_argument("--bundle", help="with --from: the bundle's name")
    u.add_argument("--canary", default=DEFAULT_CANARY, help="first stage: N devices or P%% (default 1)")
    u.add_argument("--version", help="the bundle's version: devices running it are skipped, a commit of another is a failure")
    u.add_argument("--wait", type=int, default=DEFAULT_WAIT, help=f"seconds for each device to report its outcome after the reboot (default {DEFAULT_WAIT})")
    u.add_argument("--poll", type=float, default=DEFAULT_POLL, help=f"seconds between status polls (default {DEFAULT_POLL})")
    u.add_argument("--status-timeout", type=int, default=DEFAULT_STATUS_TIMEOUT, help="seconds for one status poll")
    u.add_argument("--apply-timeout", type=int, default=DEFAULT_APPLY_TIMEOUT, help="seconds for the install")
    u.add_argument("--reboot-cmd", default="systemctl reboot", help="command that reboots a device (default: systemctl reboot)")
    u.add_argument("--out", dest="out_dir", metavar="DIR", help="save each device's install output as DIR/<name>.apply.log")
    return ap


def main(argv):
    ap = parser()
    # exec's command is everything after the first "--", taken as it is.
    command = []
    if "--" in argv:
        i = argv.index("--")
        argv, command = argv[:i], argv[i + 1:]
    args = ap.parse_args(argv)
    if command and args.op != "exec":
        ap.error(f"{args.op} takes no command after --")
    args.command = command
    if args.parallel is None:
        args.parallel = 1 if args.op == "update" else DEFAULT_PARALLEL
    try:
        if args.parallel < 1:
            raise UsageError("--parallel must be >= 1")
        if args.op == "update" and args.bundle and not args.from_pk:
            raise UsageError("--bundle goes with --from PK")
        if args.op == "update" and args.from_pk and not fleet.PK_RE.match(args.from_pk):
            raise UsageError(f"--from {args.from_pk}: not a public key (64 lowercase hex digits)")
        devices, groups = load_fleet(args.manifest, args.fleet_out)
        chosen = select(devices, groups, args.group, args.role, args.device)
        if not chosen:
            raise UsageError("no device selected")
        owner = Owner(args.skywire, args.rpc, args.config)
        return {"status": cmd_status, "exec": cmd_exec, "update": cmd_update}[args.op](args, owner, chosen)
    except UsageError as e:
        print(f"fleet: error: {e}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
