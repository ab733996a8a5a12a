#!/usr/bin/env bash
# Compares POP3 clients fetching the same maildrop from the same server (`pop3 serve` on
# 127.0.0.1): our `pop3 fetch` into a Maildir, curl (one process per message, as shell scripts
# use it; and one process with a URL range), Python's poplib, and the async-pop crate
# (bench/src/bin/async_pop_fetch.rs). Prints wall time, messages/s, MB/s and peak memory of
# each, and how much faster `pop3 fetch` is than the fastest other client: once among the
# clients as the issue names them (curl loop, poplib, async-pop used the crate's way), once
# among all other rows (adding curl with a URL range and async-pop with TCP_NODELAY).
#
# Slow at full size: the curl loop and async-pop (Nagle stall) take ~25 ms and ~45 ms per
# message, so 10000 messages take 12-15 minutes in all.
#
#   bench/clients.sh [MESSAGES] [RUNS]
#
# MESSAGES (default 10000) mixed-size messages (2, 8, 30, 120 kB, LF line ends) in one
# maildrop; each client runs RUNS times (default 1), one after the other (the maildrop lock
# allows one session at a time), and its fastest run is shown.
#
# Wall time and peak RSS come from GNU time (`%e %M`); for the curl loop that is the whole
# loop's time and the largest RSS of any one of its processes (wait4 reports the maximum over
# the waited-for descendants). Every run is checked: the files it wrote, with CRLF turned
# into LF, must be exactly the maildrop's files (as a multiset of contents), and after all
# runs the server must still hold every message (`pop3 fetch --keep`; nothing deletes).
# MB/s counts the octets on the wire (the maildrop with CRLF line ends, RETR's size).
#
# `pop3 fetch` makes messages durable (fsync of the files and of new/) in batches of up to 64
# before recording them; the other clients only write(2). If eatmydata is installed, one more
# row runs `pop3 fetch` with fsync turned into a no-op, to show what durability costs
# (diagnostic only, not a candidate for the ratio). The async-pop client also runs on a socket with TCP_NODELAY
# (see bench/src/bin/async_pop_fetch.rs): the crate's own way stalls ~40 ms per command on
# Nagle's algorithm and delayed ACKs.
#
# Everything (the server's maildrop, each client's output) lives in a fresh directory under
# $TMPDIR (default /tmp). Every client creates one file per message, so on a disk where
# creating a file is slow that cost is in every row: `TMPDIR=/dev/shm bench/clients.sh` runs
# the same comparison on tmpfs, which isolates the clients themselves.
#
# Needs: GNU time (/usr/bin/time, Debian package `time`), curl, python3; optional: eatmydata.
# Honours CARGO_TARGET_DIR.
set -euo pipefail
messages="${1:-10000}"
runs="${2:-1}"
cd "$(dirname "$0")/.."
here="$PWD"

if ! /usr/bin/time -f '%e %M' true >/dev/null 2>&1; then
  echo "clients.sh: needs GNU time at /usr/bin/time (apt-get install time)" >&2
  exit 1
fi
for tool in curl python3; do
  command -v "$tool" >/dev/null || { echo "clients.sh: needs $tool" >&2; exit 1; }
done

cargo build -q --release -p pop3-cli -p pop3-bench
bin="${CARGO_TARGET_DIR:-$here/target}/release"
case "$bin" in /*) ;; *) bin="$here/$bin" ;; esac

work="$(mktemp -d "${TMPDIR:-/tmp}/pop3-clients.XXXX")"
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# One maildrop of MESSAGES mixed-size messages, as bench/compare.sh makes them.
python3 - "$work/mail" "$messages" <<'PY'
import os, random, sys
root, per = sys.argv[1], int(sys.argv[2])
rnd = random.Random(1)
d = os.path.join(root, "user0")
for sub in ("cur", "new", "tmp"):
    os.makedirs(os.path.join(d, sub), exist_ok=True)
for i in range(per):
    size = rnd.choice([2_000, 8_000, 30_000, 120_000])
    line = "The quick brown fox jumps over the lazy dog, line of mail.\n"
    body = line * (size // len(line))
    with open(os.path.join(d, "new", f"{1700000000+i}.M{i}P0.bench"), "w") as f:
        f.write(f"From: bench@example.com\nSubject: message {i}\n\n{body}")
PY
echo "user0:{PLAIN}pw::::::" > "$work/users"

# The reference: sorted SHA-256 of every message (LF line ends), octets, wire octets (CRLF).
python3 - "$work/mail/user0/new" "$work/reference" <<'PY'
import hashlib, os, sys
src, out = sys.argv[1], sys.argv[2]
hashes, lf, wire = [], 0, 0
for name in os.listdir(src):
    data = open(os.path.join(src, name), "rb").read()
    hashes.append(hashlib.sha256(data).hexdigest())
    lf += len(data)
    wire += len(data) + data.count(b"\n")
with open(out, "w") as f:
    f.write(f"{len(hashes)} {lf} {wire}\n")
    f.write("\n".join(sorted(hashes)) + "\n")
PY
read -r ref_count ref_lf ref_wire < "$work/reference"

port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
"$bin/pop3" serve --listen "127.0.0.1:$port" --maildir-root "$work/mail" --users "$work/users" \
    --allow-plaintext-auth 2>"$work/server.log" &
server=$!
for _ in $(seq 100); do
  python3 -c "import socket;socket.create_connection(('127.0.0.1',$port),1)" 2>/dev/null && break
  sleep 0.1
done

# Checks the files under DIR (recursively; names starting with "." are skipped: the fetch
# record) against the reference, and prints "ok" or what differs.
verify() { # DIR
  python3 - "$1" "$work/reference" <<'PY'
import hashlib, os, sys
top, ref = sys.argv[1], sys.argv[2]
lines = open(ref).read().split()
count, want = int(lines[0]), sorted(lines[3:])
got, raw = [], 0
for d, dirs, files in os.walk(top):
    dirs[:] = [x for x in dirs if not x.startswith(".") and x != "tmp"]
    for name in files:
        if name.startswith("."):
            continue
        data = open(os.path.join(d, name), "rb").read()
        raw += len(data)
        got.append(hashlib.sha256(data.replace(b"\r\n", b"\n")).hexdigest())
got.sort()
if got == want:
    print(f"ok ({len(got)} files, {raw} bytes as written)")
else:
    missing = len(set(want) - set(got))
    print(f"MISMATCH: {len(got)} files (want {count}), {missing} messages missing or different, {raw} bytes as written")
PY
}

results="$work/results"
: > "$results"

# Runs one client RUNS times under GNU time, keeps its fastest run: NAME KIND CMD...
# KIND: candidate (ours), issue, extra, diagnostic (see the summary). The command writes
# into "$out" (exported, fresh for every run).
bench() {
  local name=$1 kind=$2; shift 2
  local best="" best_rss="" status=""
  for r in $(seq "$runs"); do
    export out="$work/out-$r"
    rm -rf "$out"; mkdir -p "$out"
    if ! /usr/bin/time -f '%e %M' -o "$work/time" "$@" > "$work/client.out" 2> "$work/client.err"; then
      echo "  $name: FAILED (run $r)"; sed 's/^/    /' "$work/client.err" | tail -5
      status="FAILED"; break
    fi
    local wall rss
    read -r wall rss < <(tail -1 "$work/time")
    status=$(verify "$out")
    case "$status" in ok*) ;; *) echo "  $name: $status"; break ;; esac
    if [ -z "$best" ] || awk -v a="$wall" -v b="$best" 'BEGIN{exit !(a < b)}'; then best=$wall; best_rss=$rss; fi
    rm -rf "$out"
  done
  if [ -n "$best" ] && [ "${status%% *}" = ok ]; then
    echo "$name|$kind|$best|$best_rss|$status" >> "$results"
  else
    echo "$name|$kind|-|-|${status:-FAILED}" >> "$results"
  fi
}

echo "== $(nproc) cores; 1 maildrop of $ref_count messages, $((ref_wire / 1000000)) MB on the wire; best of $runs run(s) per client"
export port
export POP3_BENCH_PW=pw

fetch_cmd=("$bin/pop3" fetch "pop3://user0@127.0.0.1:$port" --tls none --keep --quiet
  --password-env POP3_BENCH_PW)
bench "pop3 fetch (Maildir, --keep)" candidate bash -c '"$@" --maildir "$out/maildir"' _ "${fetch_cmd[@]}"
if command -v eatmydata >/dev/null; then
  bench "pop3 fetch, fsync off (eatmydata)" diagnostic \
    bash -c 'eatmydata "$@" --maildir "$out/maildir"' _ "${fetch_cmd[@]}"
fi
# The way a shell script uses curl: one process, one connection and one login per message.
bench "curl, one process per message" issue bash -c '
  for i in $(seq 1 "$1"); do
    curl -s -u user0:pw "pop3://127.0.0.1:$port/$i" -o "$out/$i" || exit 1
  done' _ "$ref_count"
# One curl process for all: a URL range; curl keeps the connection between transfers.
bench "curl, one process, URL range" extra \
  bash -c 'curl -s -u user0:pw "pop3://127.0.0.1:$port/[1-$1]" -o "$out/#1"' _ "$ref_count"
bench "python poplib" issue \
  bash -c 'exec python3 "$1" 127.0.0.1 "$port" user0 pw "$out"' _ "$here/bench/poplib_fetch.py"
bench "async-pop crate" issue \
  bash -c 'exec "$1" "127.0.0.1:$port" user0 pw "$out"' _ "$bin/async-pop-fetch"
# The crate sends each command in two writes with Nagle on, so every command waits ~40 ms for
# a delayed ACK; with TCP_NODELAY set by the caller (through `async_pop::new`) it does not.
bench "async-pop crate, TCP_NODELAY" extra \
  bash -c 'exec "$1" --nodelay "127.0.0.1:$port" user0 pw "$out"' _ "$bin/async-pop-fetch"

# Nothing was deleted: the server still lists every message.
left=$(python3 -c "
import poplib; p = poplib.POP3('127.0.0.1', $port); p.user('user0'); p.pass_('pw')
print(p.stat()[0]); p.quit()")
[ "$left" = "$ref_count" ] || echo "WARNING: the server now holds $left messages, not $ref_count"

python3 - "$results" "$ref_count" "$ref_wire" <<'PY'
import sys
rows = [l.rstrip("\n").split("|", 4) for l in open(sys.argv[1]) if l.strip()]
count, wire = int(sys.argv[2]), int(sys.argv[3])
print(f"{'client':36} {'wall s':>8} {'msg/s':>9} {'MB/s':>8} {'peak RSS MiB':>13}  check")
for name, kind, wall, rss, status in rows:
    if wall == "-":
        print(f"{name:36} {'-':>8} {'-':>9} {'-':>8} {'-':>13}  {status}")
        continue
    w = max(float(wall), 0.01)
    print(f"{name:36} {w:8.2f} {count / w:9.0f} {wire / w / 1e6:8.1f} {int(rss) / 1024:13.1f}  {status}")
ours = [float(r[2]) for r in rows if r[1] == "candidate" and r[2] != "-"]
def fastest(kinds):
    done = [(float(r[2]), r[0]) for r in rows if r[1] in kinds and r[2] != "-"]
    return min(done) if done else None
if not ours:
    print("no ratio: pop3 fetch failed")
    sys.exit(0)
o = max(ours[0], 0.01)
nosync = [float(r[2]) for r in rows if r[1] == "diagnostic" and r[0].startswith("pop3 fetch") and r[2] != "-"]
# "issue": the clients as the issue names them; "extra": other real ways to use them.
for label, kinds in (("the issue's clients", ("issue",)), ("all other clients", ("issue", "extra"))):
    f = fastest(kinds)
    if f is None:
        continue
    best, name = f
    verdict = "meets" if best / o >= 2 else "misses"
    line = f"pop3 fetch vs fastest of {label} ({name}): {best:.2f} s / {o:.2f} s = {best / o:.2f}x ({verdict} the 2x target)"
    if nosync:
        line += f"; with fsync off {best / max(nosync[0], 0.01):.2f}x"
    print(line)
PY
