#!/usr/bin/env bash
# Compares POP3 clients fetching the same maildrop from the same server (`pop3 serve` on
# 127.0.0.1): our `pop3 fetch` into a Maildir, curl (one process per message, as shell scripts
# use it; and one process with a URL range), Python's poplib, and the async-pop crate
# (bench/src/bin/async_pop_fetch.rs), and the fetchers of issue 15: mpop (Maildir delivery)
# and fetchmail (through an MDA); plus `cp -r` of the served Maildir as the floor (the same
# files written, no network). Prints wall time, messages/s, MB/s, CPU (user, sys, per GB
# stored) and peak memory of each, and how much faster `pop3 fetch` is than the fastest other
# client: once among the clients as the issue names them (curl loop, poplib, async-pop used
# the crate's way), once among curl, poplib and async-pop in all their rows (adding curl with a
# URL range and async-pop with TCP_NODELAY), and once against each of mpop and fetchmail.
#
# Slow at full size: the curl loop and async-pop (Nagle stall) take ~25 ms and ~45 ms per
# message, so 10000 messages take 12-15 minutes in all.
#
#   [SIZE=OCTETS] [CLIENTS="NAME ..."] bench/clients.sh [MESSAGES] [RUNS]
#
# MESSAGES (default 10000) mixed-size messages (2, 8, 30, 120 kB, LF line ends) in one
# maildrop, or with SIZE all of about SIZE octets (issue 15: `SIZE=100000` and 2000 messages,
# 200 MB); each client runs RUNS times (default 1), one after the other (the maildrop lock
# allows one session at a time), and its fastest run is shown. CLIENTS picks the rows (default
# all): pop3 eatmydata curl-loop curl-range poplib async-pop async-pop-nodelay mpop fetchmail cp.
# FETCH_BINARIES="name=PATH ..." adds a `pop3 fetch` row for each other build of `pop3` (an
# earlier commit), against the same server, for before/after figures (not in the ratios).
#
# Wall time, CPU and peak RSS come from GNU time (`%e %U %S %M`) of the fastest run; for the
# curl loop and fetchmail that includes their child processes (wait4 sums the CPU of the
# waited-for descendants; the RSS is the largest of any one process). CPU/GB divides user+sys
# by the octets stored (the maildrop as it is, LF line ends: what `cp -r` copies); the
# server's CPU is not in any row. Every run is checked: the files it wrote, with CRLF turned
# into LF (and fetchmail's added `Received:` header removed), must be exactly the maildrop's
# files (as a multiset of contents), and after all runs the server must still hold every
# message (every client keeps them; nothing deletes). MB/s counts the octets on the wire (the
# maildrop with CRLF line ends, RETR's size).
#
# Durability: `pop3 fetch` makes messages durable (fsync of the files and of new/) in batches
# of up to 64 before recording them (and deleting, without --keep). mpop (Maildir delivery)
# fsyncs each message's file in tmp/ before linking it into new/, one at a time (it does not
# sync the directory). fetchmail hands each message to an MDA, here `cat > FILE` run by sh
# (fetchmail can only deliver by SMTP/LMTP or an MDA; `cat` does not fsync, so that row is
# not durable, and it pays a fork and exec of sh and cat per message). `cp -r` does not fsync.
# curl, poplib and async-pop only write(2). If eatmydata is installed, one more
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
# Needs: GNU time (/usr/bin/time, Debian package `time`), curl, python3; optional: eatmydata,
# mpop, fetchmail (their rows are skipped when missing). Honours CARGO_TARGET_DIR.
set -euo pipefail
messages="${1:-10000}"
runs="${2:-1}"
size="${SIZE:-0}"
clients="${CLIENTS:-pop3 eatmydata curl-loop curl-range poplib async-pop async-pop-nodelay mpop fetchmail cp}"
# Whether CLIENTS names NAME.
want() { case " $clients " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
cd "$(dirname "$0")/.."
here="$PWD"

if ! /usr/bin/time -f '%e %U %S %M' true >/dev/null 2>&1; then
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

# One maildrop of MESSAGES mixed-size messages, as bench/compare.sh makes them (or all of
# SIZE octets).
python3 - "$work/mail" "$messages" "$size" <<'PY'
import os, random, sys
root, per, fixed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(1)
d = os.path.join(root, "user0")
for sub in ("cur", "new", "tmp"):
    os.makedirs(os.path.join(d, sub), exist_ok=True)
for i in range(per):
    size = fixed or rnd.choice([2_000, 8_000, 30_000, 120_000])
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
# record) against the reference, and prints "ok" or what differs. With "received", a
# `Received:` header field (and its continuation lines) that starts a file is not counted.
verify() { # DIR [received]
  python3 - "$1" "$work/reference" "${2:-}" <<'PY'
import hashlib, os, re, sys
top, ref, received = sys.argv[1], sys.argv[2], sys.argv[3] == "received"
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
        data = data.replace(b"\r\n", b"\n")
        if received:
            data = re.sub(rb"\AReceived:[^\n]*\n(?:[ \t][^\n]*\n)*", b"", data)
        got.append(hashlib.sha256(data).hexdigest())
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
# KIND: candidate (ours), issue, extra, peer (mpop, fetchmail), floor (cp), diagnostic (see
# the summary). The command writes into "$out" (exported, fresh for every run). VERIFY (if
# set) is the second argument of verify.
bench() {
  local name=$1 kind=$2; shift 2
  local best="" best_cpu="" best_rss="" status=""
  for r in $(seq "$runs"); do
    export out="$work/out-$r"
    rm -rf "$out"; mkdir -p "$out"
    if ! /usr/bin/time -f '%e %U %S %M' -o "$work/time" "$@" > "$work/client.out" 2> "$work/client.err"; then
      echo "  $name: FAILED (run $r)"; sed 's/^/    /' "$work/client.err" | tail -5
      status="FAILED"; break
    fi
    local wall user sys rss
    read -r wall user sys rss < <(tail -1 "$work/time")
    status=$(verify "$out" "${VERIFY:-}")
    case "$status" in ok*) ;; *) echo "  $name: $status"; break ;; esac
    if [ -z "$best" ] || awk -v a="$wall" -v b="$best" 'BEGIN{exit !(a < b)}'; then
      best=$wall; best_cpu="$user|$sys"; best_rss=$rss
    fi
    rm -rf "$out"
  done
  if [ -n "$best" ] && [ "${status%% *}" = ok ]; then
    echo "$name|$kind|$best|$best_cpu|$best_rss|$status" >> "$results"
  else
    echo "$name|$kind|-|-|-|-|${status:-FAILED}" >> "$results"
  fi
}

echo "== $(nproc) cores; 1 maildrop of $ref_count messages, $((ref_wire / 1000000)) MB on the wire, $((ref_lf / 1000000)) MB stored; best of $runs run(s) per client; $(df -P "$work" | awk 'NR==2{print $1}') ($work)"
export port
export POP3_BENCH_PW=pw

fetch_cmd=("$bin/pop3" fetch "pop3://user0@127.0.0.1:$port" --tls none --keep --quiet
  --password-env POP3_BENCH_PW)
want pop3 && bench "pop3 fetch (Maildir, --keep)" candidate \
  bash -c '"$@" --maildir "$out/maildir"' _ "${fetch_cmd[@]}"
for b in ${FETCH_BINARIES:-}; do
  other_cmd=("${b#*=}" "${fetch_cmd[@]:1}")
  bench "pop3 fetch, build ${b%%=*}" other-build \
    bash -c '"$@" --maildir "$out/maildir"' _ "${other_cmd[@]}"
done
if want eatmydata && command -v eatmydata >/dev/null; then
  bench "pop3 fetch, fsync off (eatmydata)" diagnostic \
    bash -c 'eatmydata "$@" --maildir "$out/maildir"' _ "${fetch_cmd[@]}"
fi
# The way a shell script uses curl: one process, one connection and one login per message.
want curl-loop && bench "curl, one process per message" issue bash -c '
  for i in $(seq 1 "$1"); do
    curl -s -u user0:pw "pop3://127.0.0.1:$port/$i" -o "$out/$i" || exit 1
  done' _ "$ref_count"
# One curl process for all: a URL range; curl keeps the connection between transfers.
want curl-range && bench "curl, one process, URL range" extra \
  bash -c 'curl -s -u user0:pw "pop3://127.0.0.1:$port/[1-$1]" -o "$out/#1"' _ "$ref_count"
want poplib && bench "python poplib" issue \
  bash -c 'exec python3 "$1" 127.0.0.1 "$port" user0 pw "$out"' _ "$here/bench/poplib_fetch.py"
want async-pop && bench "async-pop crate" issue \
  bash -c 'exec "$1" "127.0.0.1:$port" user0 pw "$out"' _ "$bin/async-pop-fetch"
# The crate sends each command in two writes with Nagle on, so every command waits ~40 ms for
# a delayed ACK; with TCP_NODELAY set by the caller (through `async_pop::new`) it does not.
want async-pop-nodelay && bench "async-pop crate, TCP_NODELAY" extra \
  bash -c 'exec "$1" --nodelay "127.0.0.1:$port" user0 pw "$out"' _ "$bin/async-pop-fetch"
# mpop: every message (only_new off), kept, into a Maildir, without its Received header; the
# password from passwordeval, as a script would. Its defaults otherwise (pipelining auto: on
# here, since our server offers PIPELINING; an fsync per message).
if want mpop && command -v mpop >/dev/null; then
  cat > "$work/mpoprc" <<EOF
defaults
tls off
auth user
only_new off
keep on
received_header off
account bench
host 127.0.0.1
port $port
user user0
passwordeval echo pw
EOF
  chmod 600 "$work/mpoprc"
  bench "mpop (Maildir)" peer bash -c 'mkdir -p "$out/maildir/new" "$out/maildir/cur" "$out/maildir/tmp" &&
    exec mpop -C "$1" -q --delivery=maildir,"$out/maildir" --uidls-file="$out/.mpop-uidls" bench' \
    _ "$work/mpoprc"
fi
# fetchmail: every message (fetchall), kept, plain POP3 (no STLS: sslproto ''), each one to
# `cat > $out/<pid of the MDA's shell>`. fetchmail adds a Received header (verify drops it).
if want fetchmail && command -v fetchmail >/dev/null; then
  cat > "$work/fetchmailrc" <<EOF
poll 127.0.0.1 port $port proto POP3 auth password
  user user0 password pw is $(id -un) here
  keep fetchall sslproto '' no sslcertck
EOF
  chmod 600 "$work/fetchmailrc"
  VERIFY=received bench "fetchmail (MDA: cat > file)" peer \
    bash -c 'exec fetchmail -f "$1" -i "$out/.fetchids" --nodetach --silent --mda "cat > $out/\$\$"' \
    _ "$work/fetchmailrc"
fi
# The floor: the served Maildir copied on the same file system, no network, no fsync.
want cp && bench "cp -r of the maildrop (floor)" floor \
  bash -c 'exec cp -r "$1" "$out/copy"' _ "$work/mail/user0"

# Nothing was deleted: the server still lists every message.
left=$(python3 -c "
import poplib; p = poplib.POP3('127.0.0.1', $port); p.user('user0'); p.pass_('pw')
print(p.stat()[0]); p.quit()")
[ "$left" = "$ref_count" ] || echo "WARNING: the server now holds $left messages, not $ref_count"

python3 - "$results" "$ref_count" "$ref_wire" "$ref_lf" <<'PY'
import sys
rows = [l.rstrip("\n").split("|", 6) for l in open(sys.argv[1]) if l.strip()]
count, wire, stored = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
print(f"{'client':36} {'wall s':>8} {'msg/s':>9} {'MB/s':>8} {'user s':>7} {'sys s':>7} {'CPU s/GB':>9} {'peak RSS MiB':>13}  check")
for name, kind, wall, user, sys_, rss, status in rows:
    if wall == "-":
        print(f"{name:36} {'-':>8} {'-':>9} {'-':>8} {'-':>7} {'-':>7} {'-':>9} {'-':>13}  {status}")
        continue
    w = max(float(wall), 0.01)
    cpu = float(user) + float(sys_)
    print(f"{name:36} {w:8.2f} {count / w:9.0f} {wire / w / 1e6:8.1f} {float(user):7.2f} {float(sys_):7.2f} "
          f"{cpu / (stored / 1e9):9.2f} {int(rss) / 1024:13.1f}  {status}")
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
for label, kinds in (("the issue's clients", ("issue",)), ("curl, poplib, async-pop in all their rows", ("issue", "extra"))):
    f = fastest(kinds)
    if f is None:
        continue
    best, name = f
    verdict = "meets" if best / o >= 2 else "misses"
    line = f"pop3 fetch vs fastest of {label} ({name}): {best:.2f} s / {o:.2f} s = {best / o:.2f}x ({verdict} the 2x target)"
    if nosync:
        line += f"; with fsync off {best / max(nosync[0], 0.01):.2f}x"
    print(line)
# Issue 15: against each of mpop and fetchmail, in wall time and in CPU.
ours_row = next(r for r in rows if r[1] == "candidate" and r[2] != "-")
ours_cpu = float(ours_row[3]) + float(ours_row[4])
for r in rows:
    if r[1] != "peer" or r[2] == "-":
        continue
    w, cpu = float(r[2]), float(r[3]) + float(r[4])
    verdict = "meets" if w / o >= 2 else "misses"
    print(f"pop3 fetch vs {r[0]}: wall {w:.2f} s / {o:.2f} s = {w / o:.2f}x ({verdict} the 2x target); "
          f"CPU {cpu:.2f} s / {ours_cpu:.2f} s = {cpu / max(ours_cpu, 0.01):.2f}x")
PY
