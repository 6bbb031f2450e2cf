#!/usr/bin/env python3
"""fleet/fleet.py: provisions many boards from one manifest (docs/fleet.md).

    fleet/fleet.py fleet.json [-o out/fleet]        (make fleet FLEET=fleet.json [OUT=out/fleet])
    fleet/fleet.py status|exec|update fleet.json …   operations on the running fleet (fleet/ops.py)

For every device of the manifest: an Ed25519 visor key pair (made by the real
`skywire config gen`, kept under OUT/keys, mode 0600), a `skywire-provision.json`
(format: docs/boards.md) with the whitelists resolved to public keys, and a
ready image: the board's base image (image/build.sh, built once per board and
overlay set) with only that provisioning file written into its FAT boot
partition by mtools. Plus OUT/inventory.json.

Idempotent: existing keys are kept; a device added gets one new key and the
whitelists of the devices that trust it are updated; a device removed leaves
every whitelist and its outputs are moved to OUT/archive/. The manifest is
validated completely before anything is written; the new output tree is built
next to OUT and swapped in at the end, so an error changes nothing.

Python 3 standard library only; external tools: skywire (host build), mtools
(mcopy), sfdisk, xz (for the base image only).
"""

import datetime
import hashlib
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ROLES = ("exit", "gateway", "client")
# Which overlay apps a role starts (the provisioning file's "role"), in order of preference.
ROLE_APPS = {"exit": ("vpn-exit", "socks-proxy"), "gateway": ("socks-proxy",), "client": ()}
# Whom a role whitelists when the manifest says nothing ("trusts" absent).
ROLE_DEFAULT_TRUSTS = {"exit": ["role:client", "role:gateway"], "gateway": ["role:client"], "client": []}
# App names (launcher.apps "name") that app_trusts may name. "pty" (the base image's remote root
# shell, opt-in) starts only with an app_trusts.pty list: the keys of the fleet's operators
# (`fleet/fleet.py status|exec|update` run `skywire cli pty exec` from such a key, docs/fleet.md).
APP_NAMES = ("vpn-server", "skysocks", "pty")
PTY_APP = "pty"
# The app each app overlay starts (its launcher.apps "name").
OVERLAY_APP = {"vpn-exit": "vpn-server", "socks-proxy": "skysocks"}
# A trust list that is this string (not a list) admits every visor key: "whitelist": "any" in the
# provisioning file, `--whitelist any` on the board. Closed by default: nothing else opens an app.
ANY = "any"
LOG_LEVELS = ("trace", "debug", "info", "notice", "warning", "error", "critical")
TRANSPORTS = ("stcpr", "sudph")
MANIFEST_KEYS = ("fleet", "version", "defaults", "groups", "devices")
DEFAULT_KEYS = ("board", "overlays", "ssh_authorized_keys", "log_level", "app_trusts")
DEVICE_KEYS = ("name", "board", "role", "hostname", "overlays", "ssh_authorized_keys", "trusts",
               "app_trusts", "address", "log_level")

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
HOSTNAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
PK_RE = re.compile(r"^[0-9a-f]{64}$")
SK_RE = re.compile(r"^[0-9a-f]{128}$")
# Same accepted forms as overlays/base/.../30-provision.
SSH_KEY_RE = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|"
                        r"sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/=]+( .*)?$")
ADDR_RE = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$")
MAX_PORT = 65535

PROVISION_NAME = "skywire-provision.json"
PROVISION_VERSION = 1
SECTOR = 512
MIB = 1 << 20
# The device image is a concatenation of xz streams, one per SEGMENT of the raw disk:
# the base image's streams are made once and reused; only segments mcopy changed are
# compressed again (xz, xzcat, Python's lzma and bmaptool read multi-stream files).
SEGMENT = 8 * MIB
XZ_PRESET = int(os.environ.get("FLEET_XZ_LEVEL", "6"))
JOBS = max(1, int(os.environ.get("FLEET_JOBS", "2")))
FORMATS = ("xz", "raw")
EXIT_MANIFEST = 2
EXIT_FAILURE = 1


class Fail(Exception):
    """A fatal problem outside the manifest (tools, base image, key store)."""


def log(msg):
    print(f"fleet: {msg}", file=sys.stderr, flush=True)


# --- manifest positions (for error messages with line numbers) -------------------

def json_lines(text):
    """Maps every value's path (tuple of keys/indices) to the line it starts on.

    A small scanner over text that json.loads already accepted; json's own
    decoder has no positions."""
    ws = re.compile(r"[ \t\n\r]*")
    dec = json.JSONDecoder()
    lines = {}
    nl = [i for i, c in enumerate(text) if c == "\n"]

    def line_of(i):
        lo, hi = 0, len(nl)
        while lo < hi:
            mid = (lo + hi) // 2
            if nl[mid] < i:
                lo = mid + 1
            else:
                hi = mid
        return lo + 1

    def value(i, path):
        i = ws.match(text, i).end()
        lines[path] = line_of(i)
        c = text[i]
        if c in "{[":
            close = "}" if c == "{" else "]"
            i = ws.match(text, i + 1).end()
            if text[i] == close:
                return i + 1
            n = 0
            while True:
                i = ws.match(text, i).end()
                if c == "{":
                    key, i = json.decoder.scanstring(text, i + 1)
                    i = ws.match(text, i).end() + 1          # ':'
                    i = value(i, path + (key,))
                else:
                    i = value(i, path + (n,))
                n += 1
                i = ws.match(text, i).end()
                if text[i] == ",":
                    i += 1
                    continue
                return i + 1
        _, end = dec.raw_decode(text, i)
        return end

    value(0, ())
    return lines


class Manifest:
    """Validates a manifest completely, collecting every error with its position."""

    def __init__(self, path):
        self.path = path
        self.errors = []
        self.warnings = []
        try:
            with open(path, encoding="utf-8") as f:
                self.text = f.read()
        except OSError as e:
            raise Fail(f"cannot read the manifest {path}: {e.strerror}")
        try:
            self.data = json.loads(self.text)
        except json.JSONDecodeError as e:
            self.errors.append(f"{path}:{e.lineno}:{e.colno}: not valid JSON: {e.msg}")
            self.data = None
            self.lines = {}
            return
        self.lines = json_lines(self.text)

    def where(self, path):
        """'file:line: devices[1] "exit-1".board' for a value path (the nearest enclosing line)."""
        p = tuple(path)
        while p not in self.lines and p:
            p = p[:-1]
        line = self.lines.get(p, 1)
        label = ""
        for pos, k in enumerate(path):
            if isinstance(k, int):
                label += f"[{k}]"
                if pos == 1 and path[0] == "devices" and isinstance(self.data, dict):
                    devs = self.data.get("devices")
                    if isinstance(devs, list) and k < len(devs) and isinstance(devs[k], dict) \
                            and isinstance(devs[k].get("name"), str):
                        label += f' "{devs[k]["name"]}"'
            else:
                label += ("." if label else "") + str(k)
        return f"{self.path}:{line}: {label or '(top level)'}"

    def err(self, path, msg):
        e = f"{self.where(path)}: {msg}"
        if e not in self.errors:                  # a defaults entry is checked once per device
            self.errors.append(e)

    def warn(self, path, msg):
        self.warnings.append(f"{self.where(path)}: {msg}")

    # -- checks ---------------------------------------------------------------

    def string_list(self, path, v, what, pattern=None):
        if not isinstance(v, list):
            self.err(path, f"must be an array of {what}")
            return None
        out = []
        for i, s in enumerate(v):
            if not isinstance(s, str) or (pattern is not None and not pattern.match(s)):
                self.err(list(path) + [i], f"{json.dumps(s)} is not {what}")
            else:
                out.append(s)
        return out

    def validate(self, boards, overlays):
        """Returns the list of normalized devices (dicts), or None when there are errors."""
        if self.data is None:
            return None
        d = self.data
        if not isinstance(d, dict):
            self.err([], "the manifest must be a JSON object with a \"devices\" array")
            return None
        for k in d:
            if k not in MANIFEST_KEYS:
                self.err([k], f"unknown field (known: {', '.join(MANIFEST_KEYS)})")
        if d.get("version", 1) != 1:
            self.err(["version"], "must be 1")
        if "fleet" in d and not (isinstance(d["fleet"], str) and NAME_RE.match(d["fleet"])):
            self.err(["fleet"], "must be a name of lowercase letters, digits and '-'")

        defaults = d.get("defaults", {})
        if not isinstance(defaults, dict):
            self.err(["defaults"], "must be an object")
            defaults = {}
        for k in defaults:
            if k not in DEFAULT_KEYS:
                self.err(["defaults", k], f"unknown field (defaults may set: {', '.join(DEFAULT_KEYS)})")

        devs = d.get("devices")
        if not isinstance(devs, list) or not devs:
            self.err(["devices"] if "devices" in d else [], "\"devices\" must be a non-empty array of objects")
            return None

        names = {}
        for i, dev in enumerate(devs):
            if isinstance(dev, dict) and isinstance(dev.get("name"), str):
                n = dev["name"]
                if n in names:
                    self.err(["devices", i, "name"], f"duplicate device name '{n}' (also devices[{names[n]}])")
                else:
                    names[n] = i

        groups = d.get("groups", {})
        if not isinstance(groups, dict):
            self.err(["groups"], "must be an object {\"group\": [device names]}")
            groups = {}
        group_members = {}
        for g, members in groups.items():
            if not NAME_RE.match(g):
                self.err(["groups", g], "group names are lowercase letters, digits and '-'")
            ms = self.string_list(["groups", g], members, "device names")
            if ms is None:
                continue
            for j, m in enumerate(ms):
                if m not in names:
                    self.err(["groups", g, j], f"no device named '{m}'")
            group_members[g] = [m for m in ms if m in names]

        out = []
        hostnames = {}
        for i, dev in enumerate(devs):
            p = ["devices", i]
            if not isinstance(dev, dict):
                self.err(p, "must be an object")
                continue
            for k in dev:
                if k not in DEVICE_KEYS:
                    self.err(p + [k], f"unknown field (known: {', '.join(DEVICE_KEYS)})")
            nd = {"index": i}
            name = dev.get("name")
            if name is None:
                self.err(p, "missing field \"name\"")
            elif not isinstance(name, str) or not NAME_RE.match(name):
                self.err(p + ["name"], f"{json.dumps(name)}: names are 1-63 lowercase letters, digits and '-'")
                name = None
            nd["name"] = name

            role = dev.get("role")
            if role is None:
                self.err(p, "missing field \"role\"")
            elif role not in ROLES:
                self.err(p + ["role"], f"{json.dumps(role)} is not a role (exit, gateway, client)")
                role = None
            nd["role"] = role

            board = dev.get("board", defaults.get("board"))
            bpath = p + ["board"] if "board" in dev else ["defaults", "board"]
            if board is None:
                self.err(p, "missing field \"board\" (and no defaults.board)")
            elif not isinstance(board, str) or board not in boards:
                self.err(bpath, f"unknown board {json.dumps(board)} (board-configs/ has: {', '.join(sorted(boards))})")
                board = None
            nd["board"] = board

            host = dev.get("hostname", name)
            if host is not None and (not isinstance(host, str) or not HOSTNAME_RE.match(host)):
                self.err(p + ["hostname"], f"{json.dumps(host)}: host names are 1-63 letters, digits and '-'")
                host = None
            elif host is not None:
                if host.lower() in hostnames:
                    self.err(p + (["hostname"] if "hostname" in dev else ["name"]),
                             f"host name '{host}' already used by devices[{hostnames[host.lower()]}]")
                hostnames[host.lower()] = i
            nd["hostname"] = host

            ov = dev.get("overlays", defaults.get("overlays"))
            opath = p + ["overlays"] if "overlays" in dev else ["defaults", "overlays"]
            if ov is None:
                ov = boards[board]["DEFAULT_OVERLAYS"].split(",") if board else None
            else:
                ov = self.string_list(opath, ov, "overlay names")
                if ov is not None:
                    for j, o in enumerate(ov):
                        if o not in overlays:
                            self.err(opath + [j], f"unknown overlay '{o}' (overlays/ has: {', '.join(sorted(overlays))})")
                    if not ov or ov[0] != "base":
                        self.err(opath, "the first overlay must be 'base'")
                    if len(set(ov)) != len(ov):
                        self.err(opath, "an overlay is named twice")
            nd["overlays"] = ov
            if role and ov is not None:
                apps = [a for a in ROLE_APPS[role] if a in ov]
                if role == "exit" and not apps:
                    self.err(opath, "an exit needs the 'vpn-exit' or 'socks-proxy' overlay")
                nd["apps"] = apps

            keys = dev.get("ssh_authorized_keys", defaults.get("ssh_authorized_keys", []))
            kpath = p + ["ssh_authorized_keys"] if "ssh_authorized_keys" in dev else ["defaults", "ssh_authorized_keys"]
            keys = self.string_list(kpath, keys, "an OpenSSH public key line", SSH_KEY_RE)
            if keys == []:
                self.warn(p, "no ssh_authorized_keys: nobody can log in over SSH")
            nd["ssh_authorized_keys"] = keys or []

            ll = dev.get("log_level", defaults.get("log_level"))
            if ll is not None and ll not in LOG_LEVELS:
                self.err(p + ["log_level"] if "log_level" in dev else ["defaults", "log_level"],
                         f"{json.dumps(ll)} is not one of {', '.join(LOG_LEVELS)}")
            nd["log_level"] = ll

            addr = dev.get("address")
            if addr is not None:
                if not isinstance(addr, dict) or not addr:
                    self.err(p + ["address"], "must be an object {\"stcpr\": \"host:port\", \"sudph\": \"host:port\"}")
                    addr = None
                else:
                    for t, a in addr.items():
                        m = ADDR_RE.match(a) if isinstance(a, str) else None
                        if t not in TRANSPORTS:
                            self.err(p + ["address", t], f"unknown transport (stcpr, sudph)")
                        elif not m or not 0 < int(m.group(2)) <= MAX_PORT:
                            self.err(p + ["address", t], f"{json.dumps(a)} is not host:port")
            nd["address"] = addr

            nd["trusts"] = self.refs(p + ["trusts"], dev.get("trusts"), names, group_members, role)
            # defaults.app_trusts applies per app; a device's own entry for an app replaces it.
            nd["app_trusts"] = {}
            for base, at in ((["defaults"], defaults.get("app_trusts", {})), (p, dev.get("app_trusts", {}))):
                if not isinstance(at, dict):
                    self.err(base + ["app_trusts"], "must be an object {\"<app>\": [references]}")
                    continue
                for app, refs in at.items():
                    where = base + ["app_trusts", app]
                    if app not in APP_NAMES:
                        self.err(where, f"unknown app (one of {', '.join(APP_NAMES)})")
                    if app == PTY_APP and refs == ANY:
                        self.err(where, "pty is a root shell on the board: name its keys (\"any\" is refused here)")
                        continue
                    r = self.refs(where, refs, names, group_members, role)
                    if r is not None:
                        nd["app_trusts"][app] = r
            out.append(nd)
        if self.errors:
            return None
        self.access_warnings(out, group_members)
        return out

    def access_warnings(self, devices, groups):
        """Names every app that will refuse every key (its trusts resolve to nobody) or admit every key."""
        for d in devices:
            p = ["devices", d["index"]]
            for overlay in d.get("apps", []):
                app = OVERLAY_APP[overlay]
                refs, where = (d["app_trusts"][app], p + ["app_trusts", app]) if app in d["app_trusts"] else (d["trusts"], p + ["trusts"])
                if refs == ANY:
                    self.warn(where, f"{app}: whitelist any: open to every visor key")
                elif not any(members(refs, d, devices, groups)):
                    self.warn(where, f"{app}: whitelist empty: refuses every key (the trust list names no other device or key)")

    def refs(self, path, v, names, groups, role):
        """Checks a trust list: device names, '@group', 'role:<role>', 'all', or 64-hex keys; or "any" alone."""
        if v is None:
            return list(ROLE_DEFAULT_TRUSTS.get(role, []))
        if v == ANY:
            return ANY
        refs = self.string_list(path, v, 'trust references (or the string "any" for every visor key)')
        if refs is None:
            return None
        for j, r in enumerate(refs):
            if PK_RE.match(r) or r == "all" or r in names:
                continue
            if r == ANY:
                self.err(path + [j], f"'any' (every visor key) stands alone: write {json.dumps(ANY)} instead of a list")
            elif r.startswith("@"):
                if r[1:] not in groups:
                    self.err(path + [j], f"no group named '{r[1:]}' (groups: {', '.join(sorted(groups)) or 'none'})")
            elif r.startswith("role:"):
                if r[5:] not in ROLES:
                    self.err(path + [j], f"'{r}': no such role (exit, gateway, client)")
            else:
                self.err(path + [j], f"'{r}' names no device of the fleet (nor '@group', 'role:…', 'all' or a 64-hex public key)")
        return refs


def members(refs, me, devices, groups):
    """A trust list (not ANY) -> (the devices it names, never `me`; the outside keys it names)."""
    devs, keys = [], set()
    for r in refs:
        if PK_RE.match(r):
            keys.add(r)
        elif r == "all":
            devs += devices
        elif r.startswith("@"):
            devs += [x for x in devices if x["name"] in groups[r[1:]]]
        elif r.startswith("role:"):
            devs += [x for x in devices if x["role"] == r[5:]]
        else:
            devs += [x for x in devices if x["name"] == r]
    return [x for x in devs if x is not me], keys


def resolve(refs, me, devices, groups):
    """Trust references -> sorted public keys (never the device's own); ANY stays ANY."""
    if refs == ANY:
        return ANY
    devs, keys = members(refs, me, devices, groups)
    pks = keys | {x["pk"] for x in devs}
    pks.discard(me["pk"])
    return sorted(pks)


def admits(dev, pk):
    """Whether some whitelist of `dev` (resolved) lets `pk` use one of its apps."""
    return any(w == ANY or pk in w for w in [dev["whitelist"]] + list(dev["app_whitelists"].values()))


# --- boards, overlays ----------------------------------------------------------

def load_boards():
    """board-configs/<board>.conf as dicts (KEY=value lines, as image/build.sh reads them)."""
    boards = {}
    d = os.path.join(REPO, "board-configs")
    for f in sorted(os.listdir(d)):
        if not f.endswith(".conf"):
            continue
        conf = {}
        with open(os.path.join(d, f), encoding="utf-8") as fh:
            for line in fh:
                m = re.match(r'^([A-Z][A-Z0-9_]*)=(.*)$', line.rstrip("\n"))
                if m:
                    v = m.group(2)
                    conf[m.group(1)] = v[1:-1] if len(v) >= 2 and v[0] == v[-1] == '"' else v
        boards[f[:-5]] = conf
    return boards


def load_overlays():
    d = os.path.join(REPO, "overlays")
    return {o for o in os.listdir(d) if os.path.isdir(os.path.join(d, o))}


# --- files -----------------------------------------------------------------------

def write_file(path, data, mode=0o600):
    """Writes atomically (temp file + rename): a hard-linked old version is never changed."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def read_text(path):
    with open(path, encoding="utf-8") as f:
        return f.read().strip()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MIB):
            h.update(chunk)
    return h.hexdigest()


def link_tree(src, dst):
    """Copies a directory tree as hard links (cp -al): cheap, and the original stays untouched
    as long as files in dst are only ever replaced, never written in place."""
    os.makedirs(dst, mode=0o700, exist_ok=True)
    for root, dirs, files in os.walk(src):
        rel = os.path.relpath(root, src)
        for dn in dirs:
            os.makedirs(os.path.join(dst, rel, dn), mode=0o700, exist_ok=True)
        for fn in files:
            if ".tmp-" in fn:
                continue
            os.link(os.path.join(root, fn), os.path.join(dst, rel, fn))


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


# --- keys --------------------------------------------------------------------------

def host_skywire():
    """The host skywire binary: HOST_SKYWIRE_BIN, else `swift build` in the repo."""
    b = os.environ.get("HOST_SKYWIRE_BIN")
    if not b:
        log("HOST_SKYWIRE_BIN not set: building the host skywire (swift build --product skywire)")
        try:
            run(["swift", "build", "--product", "skywire"], cwd=REPO, stdout=sys.stderr)
            bindir = run(["swift", "build", "--show-bin-path"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError) as e:
            raise Fail(f"could not build the host skywire ({e}); set HOST_SKYWIRE_BIN=/path/to/skywire")
        b = os.path.join(bindir, "skywire")
    if not os.access(b, os.X_OK):
        raise Fail(f"host skywire binary {b} is not executable (HOST_SKYWIRE_BIN)")
    return b


def gen_key(skywire, tmpdir):
    """A fresh visor key pair from `skywire config gen` (the visor's own key generation)."""
    cfg = os.path.join(tmpdir, "keygen.json")
    try:
        r = run([skywire, "config", "gen", "-o", cfg, "--force"], capture_output=True, text=True, timeout=60)
        with open(cfg, encoding="utf-8") as f:
            c = json.load(f)
    except subprocess.CalledProcessError as e:
        raise Fail(f"'{skywire} config gen' failed (exit {e.returncode}): "
                   f"{e.stderr.strip() or e.stdout.strip() or 'no message'}; is it the real skywire?")
    except (OSError, ValueError, subprocess.TimeoutExpired) as e:
        raise Fail(f"'{skywire} config gen' gave no readable config ({e}); is it the real skywire?")
    finally:
        if os.path.exists(cfg):
            os.unlink(cfg)
    sk, pk = c.get("sk"), c.get("pk")
    if not (isinstance(sk, str) and SK_RE.match(sk) and isinstance(pk, str) and PK_RE.match(pk) and sk[64:] == pk):
        raise Fail(f"'{skywire} config gen' wrote no valid sk/pk pair; is it the real skywire?")
    printed = r.stdout.strip()
    if printed and printed != pk:
        raise Fail(f"'{skywire} config gen' printed pk {printed} but wrote {pk}")
    return sk, pk


def read_key(keys_dir, name):
    """An existing key pair of OUT/keys, checked (sk = seed || pk)."""
    skf, pkf = os.path.join(keys_dir, f"{name}.sk"), os.path.join(keys_dir, f"{name}.pk")
    sk = read_text(skf)
    if not SK_RE.match(sk):
        raise Fail(f"{skf}: not a secret key (128 lowercase hex digits); fix or remove it by hand")
    pk = read_text(pkf) if os.path.exists(pkf) else sk[64:]
    if pk != sk[64:]:
        raise Fail(f"{pkf} does not match {skf}")
    if os.stat(skf).st_mode & 0o077:
        raise Fail(f"{skf} is readable by others (mode {oct(os.stat(skf).st_mode & 0o777)}): chmod 600 it")
    return sk, pk


# --- base images -------------------------------------------------------------------

def base_image(board, overlays, conf):
    """Builds (or reuses: image/build.sh caches it) the board's image; returns the .img.xz path."""
    default = conf["DEFAULT_OVERLAYS"].split(",")
    out_dir = os.path.join(REPO, "out", board if overlays == default else f"{board}--{'+'.join(overlays)}")
    latest = os.path.join(out_dir, f"skywire-{board}-latest.img.xz")
    if os.environ.get("FLEET_NO_IMAGE_BUILD") != "1":
        env = dict(os.environ, BOARD=board, OVERLAYS=",".join(overlays), OUT_DIR=out_dir)
        log(f"base image for {board} [{','.join(overlays)}]: image/build.sh (cached when unchanged)")
        try:
            run([os.path.join(REPO, "image", "build.sh")], env=env, stdout=sys.stderr)
        except subprocess.CalledProcessError:
            raise Fail(f"image/build.sh failed for board {board} (its log is above)")
    if not os.path.exists(latest):
        raise Fail(f"no base image {latest}: run 'make image BOARD={board} OVERLAYS={','.join(overlays)}'")
    return os.path.realpath(latest)


class BaseCache:
    """A base image prepared for fast per-device copies: the raw disk (sparse), its boot
    partition, and one xz stream per SEGMENT (all-zero segments share one stream)."""

    def __init__(self, cache_root, image_xz):
        shaf = image_xz + ".sha256"
        digest = read_text(shaf).split()[0] if os.path.exists(shaf) else sha256_file(image_xz)
        self.image_xz = image_xz
        self.digest = digest
        self.dir = os.path.join(cache_root, f"{os.path.basename(image_xz)[:-len('.img.xz')]}-{digest[:16]}")
        self.raw = os.path.join(self.dir, "raw.img")
        meta = os.path.join(self.dir, "layout.json")
        if not os.path.exists(meta):
            self.prepare(meta)
        with open(meta, encoding="utf-8") as f:
            m = json.load(f)
        self.size, self.boot_offset, self.boot_size = m["size"], m["boot_offset"], m["boot_size"]
        self.segments = m["segments"]
        self.epoch = m["epoch"]

    def seg_path(self, s):
        return os.path.join(self.dir, "zero.xz" if s == "zero" else f"seg-{s:05d}.xz")

    def prepare(self, meta):
        log(f"preparing {os.path.basename(self.image_xz)} for per-device images (once per base image)")
        tmp = self.dir + f".tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp, mode=0o700)
        raw = os.path.join(tmp, "raw.img")
        with open(raw, "wb") as f:
            p = subprocess.Popen(["xz", "-dc", self.image_xz], stdout=subprocess.PIPE)
            while chunk := p.stdout.read(MIB):
                if chunk.count(0) == len(chunk):
                    f.seek(len(chunk), os.SEEK_CUR)      # keep the copy sparse
                else:
                    f.write(chunk)
            f.truncate()
            if p.wait() != 0:
                raise Fail(f"xz -dc {self.image_xz} failed")
        size = os.path.getsize(raw)
        pt = json.loads(run(["sfdisk", "-J", raw], capture_output=True, text=True).stdout)["partitiontable"]
        part = pt["partitions"][0]
        unit = pt.get("sectorsize", SECTOR)
        boot_offset, boot_size = part["start"] * unit, part["size"] * unit
        if boot_offset + boot_size > size:
            raise Fail(f"{self.image_xz}: boot partition beyond the end of the disk")
        # The FAT times of the provisioning file: the image's SOURCE_DATE_EPOCH (from its manifest).
        epoch = 315532800      # 1980-01-01, the FAT epoch
        mf = self.image_xz[:-len(".img.xz")] + ".manifest"
        if os.path.exists(mf):
            for line in open(mf, encoding="utf-8"):
                if line.startswith("source_date_epoch="):
                    epoch = int(line.split("=", 1)[1])
        nseg = (size + SEGMENT - 1) // SEGMENT
        zero_seen = False

        def compress(i):
            with open(raw, "rb") as f:
                f.seek(i * SEGMENT)
                data = f.read(SEGMENT)
            if data.count(0) == len(data) and len(data) == SEGMENT:
                return "zero"
            with open(os.path.join(tmp, f"seg-{i:05d}.xz"), "wb") as o:
                o.write(lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=XZ_PRESET))
            return i

        with ThreadPoolExecutor(JOBS) as ex:          # liblzma releases the GIL
            segs = list(ex.map(compress, range(nseg)))
        if "zero" in segs:
            with open(os.path.join(tmp, "zero.xz"), "wb") as o:
                o.write(lzma.compress(bytes(SEGMENT), format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=XZ_PRESET))
        with open(os.path.join(tmp, "layout.json"), "w", encoding="utf-8") as f:
            json.dump({"image": os.path.basename(self.image_xz), "sha256": self.digest, "size": size,
                       "boot_offset": boot_offset, "boot_size": boot_size, "segment": SEGMENT,
                       "segments": segs, "epoch": epoch}, f)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.rename(tmp, self.dir)

    def make_device_image(self, provision, dest, fmt):
        """Writes dest (.img.xz or .img): the base image with `provision` as the FAT
        partition's skywire-provision.json. Returns (sha256 of dest, sha256 of the raw disk)."""
        work = tempfile.mkdtemp(prefix="dev-", dir=os.path.dirname(dest))
        try:
            pf = os.path.join(work, PROVISION_NAME)
            write_file(pf, provision)
            os.utime(pf, (self.epoch, self.epoch))          # fixed FAT time: same input, same image
            env = dict(os.environ, MTOOLS_SKIP_CHECK="1", TZ="UTC")
            if fmt == "raw":
                img = dest + ".partial"
                run(["cp", "--sparse=always", self.raw, img])
                run(["mcopy", "-o", "-m", "-i", f"{img}@@{self.boot_offset}", pf, f"::/{PROVISION_NAME}"], env=env)
                os.chmod(img, 0o600)
                os.replace(img, dest)
                s = sha256_file(dest)
                return s, s
            # Only the disk up to the end of the boot partition can change.
            head_len = self.boot_offset + self.boot_size
            head = os.path.join(work, "head.img")
            with open(self.raw, "rb") as src, open(head, "wb") as dst:
                left = head_len
                while left:
                    chunk = src.read(min(4 * MIB, left))
                    dst.write(chunk)
                    left -= len(chunk)
            run(["mcopy", "-o", "-m", "-i", f"{head}@@{self.boot_offset}", pf, f"::/{PROVISION_NAME}"], env=env)
            raw_hash = hashlib.sha256()
            part = dest + ".partial"
            with open(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out, \
                    open(self.raw, "rb") as base, open(head, "rb") as new:
                for i, seg in enumerate(self.segments):
                    start = i * SEGMENT
                    base.seek(start)
                    old = base.read(SEGMENT)
                    data = old
                    if start < head_len:
                        new.seek(start)
                        data = new.read(min(SEGMENT, head_len - start)) + old[head_len - start:]
                    raw_hash.update(data)
                    if data != old:
                        out.write(lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=XZ_PRESET))
                    else:
                        with open(self.seg_path(seg), "rb") as s:
                            shutil.copyfileobj(s, out, MIB)
            os.replace(part, dest)
            return sha256_file(dest), raw_hash.hexdigest()
        finally:
            shutil.rmtree(work, ignore_errors=True)


# --- main ----------------------------------------------------------------------------

def provision_doc(dev, devices, groups):
    doc = {
        "version": PROVISION_VERSION,
        "hostname": dev["hostname"],
        "ssh_authorized_keys": dev["ssh_authorized_keys"],
        "sk": dev["sk"],
        "role": dev["apps"] if dev["apps"] else "visor",
        "whitelist": dev["whitelist"],
    }
    if dev["app_whitelists"]:
        doc["app_whitelists"] = dev["app_whitelists"]
    if dev["peers"]:
        doc["peers"] = dev["peers"]
    if dev["log_level"]:
        doc["log_level"] = dev["log_level"]
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


# Fleet operations (fleet/ops.py): `fleet/fleet.py status|exec|update MANIFEST ...`.
OPS = ("status", "exec", "update")


def main(argv):
    import argparse
    if argv and argv[0] in OPS:
        import ops
        return ops.main(argv)
    ap = argparse.ArgumentParser(description="Provision a fleet of skywire boards from one manifest (docs/fleet.md).",
                                 epilog="Operations on the provisioned fleet: fleet/fleet.py status|exec|update MANIFEST ... "
                                        "(fleet/fleet.py status --help; docs/fleet.md, \"Operations\").")
    ap.add_argument("manifest")
    ap.add_argument("-o", "--out", default=os.path.join(REPO, "out", "fleet"))
    ap.add_argument("--format", choices=FORMATS, default=os.environ.get("FLEET_FORMAT", "xz"),
                    help="device images as .img.xz (default) or sparse raw .img")
    ap.add_argument("--check", action="store_true", help="validate the manifest only")
    ap.add_argument("--no-images", action="store_true", help="keys, provisioning files and inventory only")
    args = ap.parse_args(argv)
    os.umask(0o077)

    m = Manifest(args.manifest)
    boards, overlays = load_boards(), load_overlays()
    devices = m.validate(boards, overlays)
    for w in m.warnings:
        log(f"warning: {w}")
    if m.errors:
        for e in m.errors:
            print(f"fleet: error: {e}", file=sys.stderr)
        log(f"{len(m.errors)} error(s) in the manifest; nothing was changed")
        return EXIT_MANIFEST
    if args.check:
        log(f"{args.manifest}: {len(devices)} device(s), no errors")
        return 0
    groups = {g: list(v) for g, v in m.data.get("groups", {}).items()}

    out = os.path.abspath(args.out)
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    # Recover from an interrupted swap (OUT moved aside, new tree not yet in place).
    old_aside = f"{out}.old"
    if not os.path.exists(out) and os.path.isdir(old_aside):
        os.rename(old_aside, out)
    keys_dir = os.path.join(out, "keys")

    # Everything that can fail before writing: existing keys, the keygen binary, base images.
    for d in devices:
        if os.path.exists(os.path.join(keys_dir, f"{d['name']}.sk")):
            d["sk"], d["pk"] = read_key(keys_dir, d["name"])
            d["new_key"] = False
        else:
            d["new_key"] = True
    skywire = host_skywire() if any(d["new_key"] for d in devices) else None
    bases = {}
    if not args.no_images:
        for d in devices:
            k = (d["board"], tuple(d["overlays"]))
            if k not in bases:
                bases[k] = base_image(d["board"], d["overlays"], boards[d["board"]])
            d["base"] = bases[k]

    stage = f"{out}.new-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    try:
        if os.path.isdir(out):
            link_tree(out, stage)
        os.makedirs(os.path.join(stage, "keys"), mode=0o700, exist_ok=True)
        os.makedirs(os.path.join(stage, "devices"), mode=0o700, exist_ok=True)
        skeys = os.path.join(stage, "keys")
        with tempfile.TemporaryDirectory(dir=stage) as kt:
            for d in devices:
                if d["new_key"]:
                    d["sk"], d["pk"] = gen_key(skywire, kt)
                    write_file(os.path.join(skeys, f"{d['name']}.sk"), d["sk"] + "\n", 0o600)
                    write_file(os.path.join(skeys, f"{d['name']}.pk"), d["pk"] + "\n", 0o644)
                    log(f"{d['name']}: new key {d['pk']}")
        by_pk = {}
        for d in devices:
            if d["pk"] in by_pk:
                raise Fail(f"devices {by_pk[d['pk']]} and {d['name']} have the same key; remove one from {keys_dir}")
            by_pk[d["pk"]] = d["name"]

        # Whitelists, then static peers: a device gets the addresses of every device that trusts it.
        for d in devices:
            d["whitelist"] = resolve(d["trusts"], d, devices, groups)
            d["app_whitelists"] = {a: resolve(r, d, devices, groups) for a, r in sorted(d["app_trusts"].items())}
        for d in devices:
            d["peers"] = {}
            for x in devices:
                if x is not d and x.get("address") and x["apps"] and admits(x, d["pk"]):
                    d["peers"][x["pk"]] = dict(sorted(x["address"].items()))

        # Removed devices: keys and provisioning files to archive/, images deleted.
        names = {d["name"] for d in devices}
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        gone = sorted({f.rsplit(".", 1)[0] for f in os.listdir(skeys) if f.endswith((".sk", ".pk"))} - names)
        gone += sorted(set(os.listdir(os.path.join(stage, "devices"))) - names - set(gone))
        for g in gone:
            a = os.path.join(stage, "archive", f"{g}-{stamp}")
            os.makedirs(a, mode=0o700, exist_ok=True)
            for ext in ("sk", "pk"):
                f = os.path.join(skeys, f"{g}.{ext}")
                if os.path.exists(f):
                    os.rename(f, os.path.join(a, f"{g}.{ext}"))
            dd = os.path.join(stage, "devices", g)
            if os.path.isdir(dd):
                pf = os.path.join(dd, PROVISION_NAME)
                if os.path.exists(pf):
                    os.rename(pf, os.path.join(a, PROVISION_NAME))
                shutil.rmtree(dd)
            log(f"{g}: not in the manifest any more: key archived in archive/{g}-{stamp}/, outputs removed")

        caches = {}
        inventory = []
        for d in devices:
            dd = os.path.join(stage, "devices", d["name"])
            os.makedirs(dd, mode=0o700, exist_ok=True)
            prov = provision_doc(d, devices, groups)
            pf = os.path.join(dd, PROVISION_NAME)
            changed = not os.path.exists(pf) or open(pf, encoding="utf-8").read() != prov
            if changed:
                write_file(pf, prov, 0o600)
            entry = {"name": d["name"], "board": d["board"], "role": d["role"], "hostname": d["hostname"],
                     "pk": d["pk"], "overlays": d["overlays"], "apps": d["apps"],
                     "whitelist": ANY if d["whitelist"] == ANY else [by_pk.get(k, k) for k in d["whitelist"]],
                     "peers": sorted(by_pk[k] for k in d["peers"]),
                     "provision": os.path.relpath(pf, stage)}
            if not args.no_images:
                ext = ".img.xz" if args.format == "xz" else ".img"
                img = os.path.join(dd, f"skywire-{d['board']}-{d['name']}{ext}")
                key = hashlib.sha256(f"{d['base']}\n{args.format}\n{SEGMENT}\n{XZ_PRESET}\n{prov}".encode()).hexdigest()
                keyf, shaf = os.path.join(dd, ".image-key"), img + ".sha256"
                rawshaf = os.path.join(dd, f"skywire-{d['board']}-{d['name']}.img.sha256")
                for other in os.listdir(dd):                      # a format switch leaves no stale image
                    if other.startswith("skywire-") and other not in (PROVISION_NAME, os.path.basename(img), os.path.basename(shaf),
                                                                       os.path.basename(rawshaf)):
                        os.unlink(os.path.join(dd, other))
                if os.path.exists(img) and os.path.exists(keyf) and read_text(keyf) == key and os.path.exists(rawshaf):
                    digest = read_text(shaf).split()[0]
                    raw_digest = read_text(rawshaf).split()[0]
                    log(f"{d['name']}: image unchanged")
                else:
                    if d["base"] not in caches:
                        caches[d["base"]] = BaseCache(os.environ.get("FLEET_CACHE") or os.path.join(parent, ".fleet-cache"), d["base"])
                    t0 = datetime.datetime.now()
                    if os.path.exists(img):
                        os.unlink(img)                                # never write into a hard link
                    digest, raw_digest = caches[d["base"]].make_device_image(prov, img, args.format)
                    write_file(shaf, f"{digest}  {os.path.basename(img)}\n", 0o644)
                    write_file(rawshaf, f"{raw_digest}  skywire-{d['board']}-{d['name']}.img\n", 0o644)
                    write_file(keyf, key + "\n", 0o600)
                    log(f"{d['name']}: image written in {(datetime.datetime.now() - t0).total_seconds():.1f}s")
                entry.update(image=os.path.relpath(img, stage), image_sha256=digest, image_raw_sha256=raw_digest,
                             base_image=os.path.basename(d["base"]))
            inventory.append(entry)
        inv = json.dumps({"fleet": m.data.get("fleet", ""), "manifest": os.path.basename(args.manifest),
                          "devices": inventory}, indent=2) + "\n"
        invf = os.path.join(stage, "inventory.json")
        if not os.path.exists(invf) or open(invf, encoding="utf-8").read() != inv:
            write_file(invf, inv, 0o600)
        for root, dirs, _ in os.walk(stage):
            for dn in dirs:
                os.chmod(os.path.join(root, dn), 0o700)
        os.chmod(stage, 0o700)
        # Swap in the new tree.
        if os.path.isdir(out):
            shutil.rmtree(old_aside, ignore_errors=True)
            os.rename(out, old_aside)
        os.rename(stage, out)
        shutil.rmtree(old_aside, ignore_errors=True)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    log(f"{len(devices)} device(s) in {out} (inventory.json)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Fail as e:
        print(f"fleet: error: {e}", file=sys.stderr)
        sys.exit(EXIT_FAILURE)
    except subprocess.CalledProcessError as e:
        print(f"fleet: error: {' '.join(map(str, e.cmd))} failed (exit {e.returncode})", file=sys.stderr)
        sys.exit(EXIT_FAILURE)
