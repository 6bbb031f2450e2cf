#!/usr/bin/env bash
# skywire config gen/check against the built binary: pk on stdout, mode 0600, no silent
# overwrite, --force, and `check` naming the broken field with exit status 2.
set -euo pipefail
bin=${SKYWIRE_BIN:?set SKYWIRE_BIN to the skywire binary}
dir=$(mktemp -d /tmp/t-config.XXXXXX)
trap 'rm -rf "$dir"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
cfg="$dir/x.json"

# gen: exactly one line on stdout, the 64-hex public key; file mode 0600.
pk=$("$bin" config gen -o "$cfg" 2>"$dir/gen.err") || fail "config gen failed: $(cat "$dir/gen.err")"
[[ "$pk" =~ ^[0-9a-f]{64}$ ]] || fail "stdout is not one 64-hex key: '$pk'"
[ "$(stat -c %a "$cfg")" = 600 ] || fail "mode is $(stat -c %a "$cfg"), want 600"
[ "$(jq -r .pk "$cfg")" = "$pk" ] || fail "printed key differs from the file's pk"
[ "$(jq -r .transport.stcpr_port "$cfg")" = 7777 ] || fail "default stcpr_port"
ls -A "$dir" | grep -q '\.tmp-' && fail "temporary file left behind"

# check: ok, exit 0.
"$bin" config check -c "$cfg" >"$dir/check.out" 2>&1 || fail "check of a fresh config failed: $(cat "$dir/check.out")"
grep -q "$pk" "$dir/check.out" || fail "check does not name the key"

# A second gen must not overwrite; the file stays as it was.
before=$(sha256sum <"$cfg")
if "$bin" config gen -o "$cfg" >"$dir/gen2.out" 2>"$dir/gen2.err"; then fail "second gen succeeded"; fi
grep -q "already exists" "$dir/gen2.err" || fail "unclear message: $(cat "$dir/gen2.err")"
grep -q -- "--force" "$dir/gen2.err" || fail "message does not mention --force"
[ ! -s "$dir/gen2.out" ] || fail "second gen printed on stdout"
[ "$(sha256sum <"$cfg")" = "$before" ] || fail "file changed after refused gen"

# --force replaces it with a new identity and options are applied.
pk2=$("$bin" config gen -o "$cfg" --force --stcpr-port 0 --sudph-port 9999 --log-level debug \
      --cli-addr "$dir/cli.sock" --state-dir "$dir/state" 2>/dev/null) || fail "gen --force failed"
[[ "$pk2" =~ ^[0-9a-f]{64}$ && "$pk2" != "$pk" ]] || fail "gen --force did not make a new key"
[ "$(jq -r '[.transport.stcpr_port, .transport.sudph_port, .log_level] | join(",")' "$cfg")" = "0,9999,debug" ] \
    || fail "options not applied"
[ "$(stat -c %a "$cfg")" = 600 ] || fail "mode after --force is $(stat -c %a "$cfg")"

# --sk reuses a given key: same sk gives the same pk.
sk=$(jq -r .sk "$cfg")
pk3=$("$bin" config gen -o "$dir/y.json" --sk "$sk" 2>/dev/null) || fail "gen --sk failed"
[ "$pk3" = "$pk2" ] || fail "--sk gave a different public key"
# Change the last hex digit of the stored public-key half (to a digit it is not).
last=${sk:127:1}; if [ "$last" = 0 ]; then bad_sk="${sk:0:127}1"; else bad_sk="${sk:0:127}0"; fi
if "$bin" config gen -o "$dir/z.json" --sk "$bad_sk" >/dev/null 2>"$dir/sk.err"; then fail "bad --sk accepted"; fi
[ ! -e "$dir/z.json" ] || fail "bad --sk wrote a file"

# --sk-file / --sk-file - (stdin): the same key without putting it on a command line.
(umask 077; printf '%s\n' "$sk" >"$dir/sk")
pk4=$("$bin" config gen -o "$dir/f.json" --sk-file "$dir/sk" 2>"$dir/skf.err") || fail "gen --sk-file failed: $(cat "$dir/skf.err")"
[ "$pk4" = "$pk2" ] && [ "$(jq -r .sk "$dir/f.json")" = "$sk" ] || fail "--sk-file gave a different key"
pk5=$(printf '%s\n' "$sk" | "$bin" config gen -o "$dir/s.json" --sk-file - 2>"$dir/sks.err") || fail "gen --sk-file - failed: $(cat "$dir/sks.err")"
[ "$pk5" = "$pk2" ] || fail "--sk-file - gave a different public key"
chmod 644 "$dir/sk"
if "$bin" config gen -o "$dir/g.json" --sk-file "$dir/sk" >/dev/null 2>"$dir/skm.err"; then fail "a group/other-readable --sk-file accepted"; fi
grep -q "chmod 600" "$dir/skm.err" && [ ! -e "$dir/g.json" ] || fail "--sk-file mode: $(cat "$dir/skm.err")"
(umask 077; printf '%s\n' "$bad_sk" >"$dir/bad-sk")
if "$bin" config gen -o "$dir/g.json" --sk-file "$dir/bad-sk" >/dev/null 2>"$dir/skb.err"; then fail "bad --sk-file accepted"; fi
if "$bin" config gen -o "$dir/g.json" --sk "$sk" --sk-file "$dir/sk" >/dev/null 2>"$dir/skx.err"; then fail "--sk with --sk-file accepted"; fi
grep -q "exclusive" "$dir/skx.err" && [ ! -e "$dir/g.json" ] || fail "--sk with --sk-file: $(cat "$dir/skx.err")"
grep -q -- "--sk-file: cannot open" <("$bin" config gen -o "$dir/g.json" --sk-file "$dir/none" 2>&1) || fail "missing --sk-file not reported"

# Invalid option values are rejected and write nothing.
if "$bin" config gen -o "$dir/r.json" --cli-addr relative.sock >/dev/null 2>"$dir/rel.err"; then fail "relative cli-addr accepted"; fi
grep -q "cli_addr: must be an absolute path" "$dir/rel.err" || fail "unclear: $(cat "$dir/rel.err")"
[ ! -e "$dir/r.json" ] || fail "invalid gen wrote a file"

# check on a corrupted file: exit 2 and every broken field named.
jq '.log_level = "loud" | .launcher.apps[2].port = 99999 | .transport.bogus = 1' "$cfg" >"$dir/bad.json"
chmod 600 "$dir/bad.json"
set +e
"$bin" config check -c "$dir/bad.json" >"$dir/bad.out" 2>&1
rc=$?
set -e
[ "$rc" = 2 ] || fail "check of a corrupted file exited $rc, want 2"
for want in 'log_level: "loud" is not one of' 'launcher.apps\[2\].port: 99999 is not in 1...65535' \
            'transport.bogus: unknown field'; do
    grep -q "$want" "$dir/bad.out" || fail "check output lacks '$want': $(cat "$dir/bad.out")"
done

# ---- access (issue 16): closed by default ------------------------------------------------------
# `config check` names every app that refuses every key (no or an empty whitelist) and every app
# open to every key (`--whitelist any`); a malformed key, or `any` mixed with keys, is a problem
# (exit 2), never "everyone".
access_cfg() {  # access_cfg VPN_ARGS_JSON SOCKS_ARGS_JSON -> $dir/acc.json, both apps auto-started
    jq --argjson v "$1" --argjson s "$2" '(.launcher.apps[] | select(.name=="vpn-server")) |= (.auto_start=true | .args=$v)
        | (.launcher.apps[] | select(.name=="skysocks")) |= (.auto_start=true | .args=$s)' "$cfg" >"$dir/acc.json"
    chmod 600 "$dir/acc.json"
}
access_cfg '[]' '["--whitelist","any"]'
"$bin" config check -c "$dir/acc.json" >"$dir/acc.out" 2>&1 || fail "access: check failed: $(cat "$dir/acc.out")"
grep -qF 'launcher.apps[0].args: vpn-server: whitelist empty: refuses every key; use --whitelist PK,... or --whitelist any' "$dir/acc.out" \
    || fail "access: no/empty whitelist not named: $(cat "$dir/acc.out")"
grep -qF 'launcher.apps[2].args: skysocks: whitelist any: open to every visor key' "$dir/acc.out" \
    || fail "access: --whitelist any not named: $(cat "$dir/acc.out")"
access_cfg '["--whitelist",""]' "[\"--whitelist\",\"$pk\"]"
"$bin" config check -c "$dir/acc.json" >"$dir/acc.out" 2>&1 || fail "access: check failed: $(cat "$dir/acc.out")"
grep -qF 'vpn-server: whitelist empty: refuses every key' "$dir/acc.out" || fail "access: empty whitelist not named: $(cat "$dir/acc.out")"
grep -q 'skysocks' "$dir/acc.out" && fail "access: a listed whitelist gave a notice: $(cat "$dir/acc.out")"
for bad in '["--whitelist","nope"]' "[\"--whitelist\",\"any,$pk\"]"; do
    access_cfg "$bad" '[]'
    set +e; "$bin" config check -c "$dir/acc.json" >"$dir/acc.out" 2>&1; rc=$?; set -e
    [ "$rc" = 2 ] && grep -qE 'launcher.apps\[0\].args: vpn-server: --whitelist: ("nope" is not a visor public key|"any" admits every key and cannot be combined)' "$dir/acc.out" \
        || fail "access: $bad: rc=$rc $(cat "$dir/acc.out")"
done
# ---- end access ---------------------------------------------------------------------------------

# sk not matching pk: exit 2, never silently regenerated.
jq --arg pk "$pk" '.pk = $pk' "$cfg" >"$dir/mismatch.json"
chmod 600 "$dir/mismatch.json"
set +e; "$bin" config check -c "$dir/mismatch.json" >"$dir/mm.out" 2>&1; rc=$?; set -e
[ "$rc" = 2 ] && grep -q "sk: does not match pk" "$dir/mm.out" || fail "mismatch: rc=$rc $(cat "$dir/mm.out")"

# Broken JSON: exit 2 with line and column.
printf '{\n  "pk": \n}\n' >"$dir/syntax.json"; chmod 600 "$dir/syntax.json"
set +e; "$bin" config check -c "$dir/syntax.json" >"$dir/syn.out" 2>&1; rc=$?; set -e
[ "$rc" = 2 ] && grep -q "line 3, column 1" "$dir/syn.out" || fail "syntax: rc=$rc $(cat "$dir/syn.out")"

# A group/other-readable file is refused like ssh refuses private keys.
chmod 644 "$cfg"
set +e; "$bin" config check -c "$cfg" >"$dir/mode.out" 2>&1; rc=$?; set -e
[ "$rc" = 2 ] && grep -q "mode 0644" "$dir/mode.out" || fail "mode: rc=$rc $(cat "$dir/mode.out")"

echo "t-config: ok"
