#!/usr/bin/env bash
# Runs the same loads against our server (`pop3 serve`) and Dovecot (Debian's package,
# configured here in a temporary directory) on 127.0.0.1, over identical copies of the same
# Maildirs and users, and prints each result and the ratio, with each server's peak memory.
#
#   bench/compare.sh [USERS] [MESSAGES_PER_USER] [SESSIONS] [CONCURRENCY] [IDLE]
#
# IDLE > 0 adds a load of IDLE concurrent logged-in idle sessions (held 10 s; Dovecot with its
# default process per session gets DOVECOT_IDLE, default min(IDLE, 2000)), reporting each
# server's memory per idle session; it needs at least IDLE users (the maildrop lock), so USERS
# is raised to IDLE for it (the extra users have empty maildrops).
#
# Needs: dovecot-core and dovecot-pop3d (.ci/install-peers.sh), a release build
# (`cargo build --release -p pop3-cli -p pop3-bench`, done here).
set -euo pipefail
users="${1:-10}"
per_user="${2:-100}"
sessions="${3:-2000}"
conc="${4:-20}"
idle="${5:-0}"
cd "$(dirname "$0")/.."
cargo build -q --release -p pop3-cli -p pop3-bench
bin=target/release
work="$(mktemp -d /tmp/pop3-compare.XXXX)"
chmod 755 "$work"
trap 'kill $ours $dove 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

# The same mail for both: USERS maildirs of PER_USER mixed-size messages (LF line ends).
python3 - "$work/mail" "$users" "$per_user" <<'PY'
import os, random, sys
root, users, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(1)
for u in range(users):
    d = os.path.join(root, f"user{u}")
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    for i in range(per):
        size = rnd.choice([2_000, 8_000, 30_000, 120_000])
        line = "The quick brown fox jumps over the lazy dog, line of mail.\n"
        body = line * (size // len(line))
        with open(os.path.join(d, "new", f"{1700000000+i}.M{i}P{u}.bench"), "w") as f:
            f.write(f"From: bench@example.com\nSubject: message {i}\n\n{body}")
PY
cp -a "$work/mail" "$work/mail-dovecot"
: > "$work/users"
all_users=$(( idle > users ? idle : users ))
for u in $(seq 0 $((all_users - 1))); do
  echo "user$u:{PLAIN}pw::::::" >> "$work/users"
  for m in mail mail-dovecot; do mkdir -p "$work/$m/user$u/cur" "$work/$m/user$u/new" "$work/$m/user$u/tmp"; done
done

chown -R 65534:65534 "$work/mail-dovecot"

ours_port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
dove_port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')

"$bin/pop3" serve --listen "127.0.0.1:$ours_port" --maildir-root "$work/mail" --users "$work/users" \
    --allow-plaintext-auth --max-connections 20000 2>/dev/null &
ours=$!

# Dovecot in its own directory DIR on PORT.
start_dovecot() { # DIR PORT
  local d=$1 port=$2
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
  process_limit = 20000
  client_limit = 20000
}
service pop3 {
  process_limit = 20000
}
service anvil {
  chroot =
}
default_client_limit = 20000
default_process_limit = 20000
CONF
  dovecot -F -c "$d/dovecot.conf" &
  dove=$!
  wait_port "$port"
}
wait_port() { # PORT
  for _ in $(seq 100); do python3 -c "import socket;socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null && return; sleep 0.1; done
}
start_dovecot "$work/dovecot" "$dove_port"
wait_port "$ours_port"

# Peak resident memory of a process tree, sampled every 100 ms while a load runs.
peak_rss() { # PID-PATTERN OUTFILE
  local max=0
  while [ -e "$2.run" ]; do
    local sum
    sum=$(ps -eo rss=,args= | awk -v pat="$1" 'index($0, pat) && !/awk -v pat/ {s += $1} END {print s+0}')
    [ "$sum" -gt "$max" ] && max=$sum
    sleep 0.1
  done
  echo "$max" > "$2"
}

run() { # NAME PORT PATTERN ARGS...
  local name=$1 port=$2 pat=$3; shift 3
  touch "$work/$name.rss.run"
  peak_rss "$pat" "$work/$name.rss" &
  local sampler=$!
  "$bin/pop3-bench" --addr "127.0.0.1:$port" --password pw "$@" > "$work/$name.out"
  rm -f "$work/$name.rss.run"; wait $sampler
  echo "$name: $(head -1 "$work/$name.out")"
  echo "    $(sed -n 2p "$work/$name.out")  peak RSS $(( $(cat "$work/$name.rss") / 1024 )) MiB"
  sed -n 3p "$work/$name.out"
}

ratio() { # field-regex A B
  python3 - "$1" "$work/$2.out" "$work/$3.out" <<'PY'
import re, sys
pat, a, b = sys.argv[1], open(sys.argv[2]).read(), open(sys.argv[3]).read()
x = float(re.search(pat, a).group(1)); y = float(re.search(pat, b).group(1))
print(f"{x:.1f} / {y:.1f} = {x / y if y else float('inf'):.2f}x")
PY
}

echo "== $(nproc) cores; $users users x $per_user messages; $sessions sessions, $conc at once"
echo "-- short sessions (login, STAT, QUIT)"
run ours-short "$ours_port" "$bin/pop3 serve" --users "$users" --sessions "$sessions" --concurrency "$conc" --mode short
run dovecot-short "$dove_port" "dovecot" --users "$users" --sessions "$sessions" --concurrency "$conc" --mode short
echo "   sessions/s ours/dovecot: $(ratio '([0-9.]+) sessions/s' ours-short dovecot-short)"
echo "-- bulk download (login, STAT, UIDL, RETR every message, QUIT), one session per user"
run ours-bulk "$ours_port" "$bin/pop3 serve" --users "$users" --sessions "$users" --concurrency "$users" --mode full
run dovecot-bulk "$dove_port" "dovecot" --users "$users" --sessions "$users" --concurrency "$users" --mode full
echo "   MB/s ours/dovecot: $(ratio '([0-9.]+) MB/s' ours-bulk dovecot-bulk)"

if [ "$idle" -gt 0 ]; then
  # Dovecot runs a process (about 3.4 MB) per session (its pop3 service does not share a
  # process between sessions, whatever client_limit says): at 10,000 that is more memory than
  # this machine has, so it gets DOVECOT_IDLE sessions (default: IDLE up to 2,000).
  dove_idle=${DOVECOT_IDLE:-$(( idle < 2000 ? idle : 2000 ))}
  idle_run() { # NAME PORT PATTERN SESSIONS
    local name=$1 port=$2 pat=$3 n=$4
    local base
    base=$(ps -eo rss=,args= | awk -v pat="$pat" 'index($0, pat) && !/awk -v pat/ {s += $1} END {print s+0}')
    # Processes while the sessions are held (they are all up after a few seconds).
    (sleep 8; ps -eo args= | awk -v pat="$pat" 'index($0, pat) && !/awk -v pat/' | wc -l > "$work/$name.procs") &
    local counter=$!
    run "$name-idle" "$port" "$pat" --users "$all_users" --sessions "$n" --concurrency "$n" --mode idle --hold 10
    wait "$counter"
    local peak
    peak=$(cat "$work/$name-idle.rss")
    echo "   $name: $(( (peak - base) * 1024 / n )) bytes of resident memory per idle session at $n sessions (peak $((peak / 1024)) MiB, before $((base / 1024)) MiB, $(cat "$work/$name.procs") processes)"
  }
  echo "-- concurrent idle sessions (logged in, held 10 s)"
  idle_run ours "$ours_port" "$bin/pop3 serve" "$idle"
  idle_run dovecot "$dove_port" "dovecot" "$dove_idle"
fi
