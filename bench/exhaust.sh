#!/usr/bin/env bash
# Connection exhaustion: IDLE connections that never log in are held open against a server,
# then a normal client (login, STAT, RETR 1, QUIT, from 127.0.0.1) runs ROUNDS sessions, one
# after the other; prints how long it waited for the greeting and for the whole session
# (median and worst), and how many sessions failed, with and without the idle connections.
#
#   bench/exhaust.sh [IDLE] [ROUNDS]        (defaults: 1100 20)
#
# The idle connections come from 127.0.0.2 ("one address") or from 127.0.0.2…127.0.0.9
# ("8 addresses"): Linux routes all of 127/8 to the loopback interface. They send nothing;
# with REOPEN=1 each one the server closes is opened again at once (an attacker that keeps
# the pressure on), otherwise it is left closed.
#
# Servers (SERVERS, default "ours ours-evict-only dovecot-tuned dovecot-tuned-1024"):
#   ours                 `pop3 serve` with its defaults (--max-connections 1024, at most 32
#                        connections not logged in per address, the oldest not logged in
#                        evicted when full, a 60 s login timeout)
#   ours-evict-only      the same with the per-address limit out of the way
#                        (--max-unauthenticated-per-ip 100000): eviction alone makes room
#   dovecot-tuned        Dovecot as bench/compare.sh tunes it (login processes shared by many
#                        connections, limits of 20,000): 1,100 connections do not fill it
#   dovecot-tuned-1024   the same with room for 1,024 connections in its login processes
#                        (client_limit x process_limit), which then drop their oldest
#                        connection that has not logged in ("Connection queue full")
# BINARIES="name=PATH ..." adds other builds of `pop3` (e.g. one from before the limits),
# each run with --max-connections 1024. KEEP=1 keeps the temporary directory.
#
# Needs: python3, dovecot-core and dovecot-pop3d (.ci/install-peers.sh) for the Dovecot rows,
# a release build (done here), an open-files hard limit above IDLE + 100.
set -euo pipefail
idle="${1:-1100}"
rounds="${2:-20}"
cd "$(dirname "$0")/.."
cargo build -q --release -p pop3-cli
bin="$PWD/target/release"
work="$(mktemp -d "${TMPDIR:-/tmp}/pop3-exhaust.XXXX")"
chmod 755 "$work"
ulimit -n "$(ulimit -Hn)"
server=
holder=
trap 'kill $holder $server 2>/dev/null || true; wait 2>/dev/null || true; [ "${KEEP:-0}" = 1 ] && echo "kept $work" || rm -rf "$work"' EXIT

# One user, alice, with one 30 kB message; the same for Dovecot (as its mail user).
for m in mail mail-dovecot; do
  mkdir -p "$work/$m/alice/cur" "$work/$m/alice/new" "$work/$m/alice/tmp"
  python3 - "$work/$m/alice/new/1700000000.M1P1.exhaust" <<'PY'
import sys
line = "The quick brown fox jumps over the lazy dog, line of mail.\n"
open(sys.argv[1], "w").write("From: bench@example.com\nSubject: hello\n\n" + line * 500)
PY
done
echo "alice:{PLAIN}pw::::::" > "$work/users"
chown -R 65534:65534 "$work/mail-dovecot"

# The idle connections: opened from the given source addresses in turn, reading nothing but
# what arrives, held until killed. Writes "opened N" to STATUS once all are open.
cat > "$work/hold.py" <<'PY'
import os, resource, selectors, socket, sys
port, n, sources, status = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split(","), sys.argv[4]
reopen = sys.argv[5] == "1"
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
sel = selectors.DefaultSelector()
def connect(i):
    s = socket.socket()
    s.bind((sources[i % len(sources)], 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, i)
failed = reopened = 0
for i in range(n):
    try:
        connect(i)
    except OSError:
        failed += 1
open(status, "w").write(f"opened {n - failed} failed {failed}\n")
while True:
    for key, _ in sel.select(timeout=0.2):
        s, i = key.fileobj, key.data
        try:
            if s.recv(4096):
                continue  # a greeting or a refusal: the connection stays until closed
        except BlockingIOError:
            continue
        except OSError:
            pass
        sel.unregister(s)
        s.close()
        if reopen:
            try:
                connect(i)
                reopened += 1
            except OSError:
                pass
    with open(status + ".tmp", "w") as f:
        f.write(f"{len(sel.get_map())} {reopened}\n")
    os.replace(status + ".tmp", status + ".live")
PY

# The normal client: ROUNDS sessions from 127.0.0.1, one after another. Prints the median and
# worst wait for the greeting and for the whole session, in ms, and the failures.
cat > "$work/client.py" <<'PY'
import socket, statistics, sys, time
port, rounds = int(sys.argv[1]), int(sys.argv[2])
greet, total, failures = [], [], []
for _ in range(rounds):
    t0 = time.perf_counter()
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        f = s.makefile("rb")
        def status(cmd=None):
            if cmd:
                s.sendall(cmd.encode() + b"\r\n")
            line = f.readline()
            if not line.startswith(b"+OK"):
                raise RuntimeError((cmd or "greeting") + ": " + (line.decode(errors="replace").strip() or "connection closed"))
            return line
        status()
        t1 = time.perf_counter()
        status("USER alice"); status("PASS pw"); status("STAT"); status("RETR 1")
        while f.readline() not in (b".\r\n", b""):
            pass
        status("QUIT")
        s.close()
        greet.append((t1 - t0) * 1000); total.append((time.perf_counter() - t0) * 1000)
    except Exception as e:
        failures.append(str(e))
    time.sleep(0.05)
def fig(v):
    return f"{statistics.median(v):7.2f} / {max(v):7.2f}" if v else "      - /       -"
err = f"  ({failures[0]})" if failures else ""
print(f"greeting {fig(greet)} ms   session {fig(total)} ms   failed {len(failures)}/{rounds}{err}")
PY

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_port() { # PORT
  for _ in $(seq 100); do python3 -c "import socket;socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null && return; sleep 0.1; done
  echo "nothing listens on $1" >&2; return 1
}

# Dovecot as bench/compare.sh tunes it, in DIR on PORT; LOGIN_ROOM > 0 gives its login
# processes room for that many connections in all (client_limit x process_limit).
start_dovecot() { # DIR PORT LOGIN_ROOM
  local d=$1 port=$2 room=$3
  local procs climit
  procs=$(nproc)
  climit=20000
  local plimit=20000
  if [ "$room" -gt 0 ]; then plimit=$procs; climit=$(( room / procs )); fi
  mkdir -p "$d/run" "$d/state"
  cat > "$d/dovecot.conf" <<CONF
base_dir = $d/run
state_dir = $d/state
log_path = $d/dovecot.log
protocols = pop3
listen = 127.0.0.1
ssl = no
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:$work/mail-dovecot/%u
passdb {
  driver = passwd-file
  args = $work/users
}
userdb {
  driver = static
  args = uid=65534 gid=65534 home=$work/mail-dovecot/%u
}
service pop3-login {
  chroot =
  inet_listener pop3 {
    port = $port
  }
  process_limit = $plimit
  client_limit = $climit
  service_count = 0
  process_min_avail = $procs
  vsz_limit = 4G
}
service pop3 {
  process_limit = 20000
  service_count = 0
  client_limit = 1000
  vsz_limit = 4G
}
service anvil {
  chroot =
}
default_client_limit = 20000
default_process_limit = 20000
CONF
  # Its warnings (auth's client_limit against these limits, as with compare.sh's) go to a file.
  dovecot -F -c "$d/dovecot.conf" 2>>"$d/stderr" &
  server=$!
  wait_port "$port"
}

start_ours() { # BINARY PORT FLAGS...
  local b=$1 port=$2; shift 2
  "$b" serve --listen "127.0.0.1:$port" --maildir-root "$work/mail" --users "$work/users" \
      --allow-plaintext-auth --max-connections 1024 "$@" 2>"$work/ours-$port.log" &
  server=$!
  wait_port "$port"
}

stop_server() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  server=
  sleep 1
}

# Holds IDLE connections from SOURCES while the client runs; prints both runs' figures.
measure() { # NAME PORT SOURCES LABEL
  local name=$1 port=$2 sources=$3 label=$4
  local status="$work/hold-$name-$port"
  printf '  %-19s %-12s %5s idle: %s\n' "$name" "$label" 0 "$(python3 "$work/client.py" "$port" "$rounds")"
  python3 "$work/hold.py" "$port" "$idle" "$sources" "$status" "${REOPEN:-0}" &
  holder=$!
  for _ in $(seq 600); do [ -s "$status" ] && break; sleep 0.1; done
  sleep 1
  local result live
  result=$(python3 "$work/client.py" "$port" "$rounds")
  live=$(cat "$status.live" 2>/dev/null || echo "? ?")
  printf '  %-19s %-12s %5s idle: %s   [%s; %s still open, %s reopened]\n' "$name" "$label" "$idle" "$result" \
      "$(cut -d' ' -f1-4 "$status")" "${live% *}" "${live#* }"
  kill "$holder" 2>/dev/null || true
  wait "$holder" 2>/dev/null || true
  holder=
}

declare -A extra
for spec in ${BINARIES:-}; do extra[${spec%%=*}]=${spec#*=}; done
echo "== $(nproc) cores; $idle idle connections; $rounds client sessions (login, STAT, RETR 1 of 30 kB, QUIT) from 127.0.0.1, one after another; figures: median / worst"
for who in ${SERVERS:-ours ours-evict-only ${!extra[*]} dovecot-tuned dovecot-tuned-1024}; do
  for spread in one eight; do
    if [ "$spread" = one ]; then sources=127.0.0.2; label="1 address"; else
      sources=127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5,127.0.0.6,127.0.0.7,127.0.0.8,127.0.0.9; label="8 addresses"; fi
    port=$(free_port)
    case $who in
      ours) start_ours "$bin/pop3" "$port" ;;
      ours-evict-only) start_ours "$bin/pop3" "$port" --max-unauthenticated-per-ip 100000 ;;
      dovecot-tuned) start_dovecot "$work/$who-$spread" "$port" 0 ;;
      dovecot-tuned-1024) start_dovecot "$work/$who-$spread" "$port" 1024 ;;
      *) start_ours "${extra[$who]}" "$port" ;;
    esac
    measure "$who" "$port" "$sources" "$label"
    stop_server
  done
done
