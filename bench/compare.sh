#!/usr/bin/env bash
# Runs the same loads against our server (`pop3 serve`), Dovecot as Debian ships it (a login
# process and a pop3 process per connection) and Dovecot tuned for speed (login and pop3
# processes shared by many connections), all configured here in a temporary directory, on
# 127.0.0.1, over identical copies of the same Maildirs and users; prints each result, each
# server's memory and the ratios.
#
#   bench/compare.sh [USERS] [MESSAGES_PER_USER] [SESSIONS] [CONCURRENCY] [IDLE]
#
# Loads: SESSIONS short sessions (login, STAT, QUIT), CONCURRENCY at once; a bulk download
# (every user's messages, all users at once); with IDLE > 0, IDLE concurrent logged-in idle
# sessions, reporting resident memory per session while they are held (Debian's Dovecot gets
# DOVECOT_IDLE, default min(IDLE, 2000): a process per session does not fit 10,000 times in
# this machine). Idle needs IDLE users (the maildrop lock): the extra users have empty
# maildrops.
#
# SERVERS (default "ours dovecot dovecot-tuned", plus the names in BINARIES) picks which servers
# run; KEEP=1 keeps the temporary directory. BINARIES="name=PATH ..." adds other builds of
# `pop3` (an earlier commit, another TLS provider) as servers of their own, measured in the same
# run as ours. TLS=implicit runs every load over implicit TLS (a P-256 certificate made with
# the openssl command; Dovecot gets the same one).
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
bin="$PWD/target/release"
work="$(mktemp -d "${TMPDIR:-/tmp}/pop3-compare.XXXX")"
chmod 755 "$work"
# KEEP=1 keeps the directory (Dovecot's logs, each load's output) for a look afterwards.
extra_pids=
trap 'kill $ours $dove $extra_pids 2>/dev/null || true; wait 2>/dev/null || true; [ "${KEEP:-0}" = 1 ] && echo "kept $work" || rm -rf "$work"' EXIT

# The same mail for both: USERS maildirs of PER_USER mixed-size messages (LF line ends).
python3 bench/make-mail.py "$work/mail" "$users" "$per_user"
cp -a "$work/mail" "$work/mail-dovecot"
: > "$work/users"
all_users=$(( idle > users ? idle : users ))
for u in $(seq 0 $((all_users - 1))); do
  echo "user$u:{PLAIN}pw::::::" >> "$work/users"
  for m in mail mail-dovecot; do mkdir -p "$work/$m/user$u/cur" "$work/$m/user$u/new" "$work/$m/user$u/tmp"; done
done

chown -R 65534:65534 "$work/mail-dovecot"

tls="${TLS:-none}"
bench_tls=(--tls "$tls")
if [ "$tls" = implicit ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost \
      -days 30 -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
  chmod 644 "$work/key.pem"
fi
# How a build of ours listens on PORT: plain, or implicit TLS.
ours_listen() { # PORT
  if [ "$tls" = implicit ]; then
    echo "--tls-listen 127.0.0.1:$1 --cert $work/cert.pem --key $work/key.pem"
  else
    echo "--listen 127.0.0.1:$1"
  fi
}

# Every load comes from 127.0.0.1, as if from thousands of clients: the per-address limit on
# connections that have not logged in (32 by default) is lifted for builds that have it.
unlimited() { # POP3_BINARY
  if "$1" serve --help 2>/dev/null | grep -q -- --max-unauthenticated-per-ip; then
    echo "--max-unauthenticated-per-ip 20000"
  fi
}

ours_port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
dove_port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')

# shellcheck disable=SC2046
"$bin/pop3" serve $(ours_listen "$ours_port") --maildir-root "$work/mail" --users "$work/users" \
    --allow-plaintext-auth --max-connections 20000 $(unlimited "$bin/pop3") 2>/dev/null &
ours=$!
# The other builds, each on its own port, over the same Maildirs (the loads only read them).
declare -A extra_port extra_bin
for spec in ${BINARIES:-}; do
  name=${spec%%=*}
  extra_bin[$name]=${spec#*=}
  extra_port[$name]=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  # shellcheck disable=SC2046
  "${extra_bin[$name]}" serve $(ours_listen "${extra_port[$name]}") --maildir-root "$work/mail" \
      --users "$work/users" --allow-plaintext-auth --max-connections 20000 \
      $(unlimited "${extra_bin[$name]}") 2>/dev/null &
  extra_pids+=" $!"
done
dove=

# Dovecot in its own directory DIR on PORT. TUNED=1 adds Dovecot's high-performance settings:
# login processes that serve many connections, and pop3 processes that serve up to 1,000
# sessions each (by default, both start a process per connection).
start_dovecot() { # DIR PORT TUNED
  local d=$1 port=$2 tuned=$3
  local login_extra="" pop3_extra=""
  if [ "$tuned" = 1 ]; then
    login_extra="service_count = 0
  process_min_avail = $(nproc)
  vsz_limit = 4G"
    # 1,000 sessions need more than the default 256 MB of address space per process.
    pop3_extra="service_count = 0
  client_limit = 1000
  vsz_limit = 4G"
  fi
  mkdir -p "$d/run" "$d/state"
  local ssl_conf="ssl = no" listener_name=pop3 listener_ssl=""
  if [ "$tls" = implicit ]; then
    ssl_conf="ssl = required
ssl_cert = <$work/cert.pem
ssl_key = <$work/key.pem"
    listener_name=pop3s
    listener_ssl="ssl = yes"
  fi
  cat > "$d/dovecot.conf" <<CONF
base_dir = $d/run
state_dir = $d/state
log_path = $d/dovecot.log
protocols = pop3
listen = 127.0.0.1
$ssl_conf
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
  inet_listener $listener_name {
    port = $port
    $listener_ssl
  }
  process_limit = 20000
  client_limit = 20000
  $login_extra
}
service pop3 {
  process_limit = 20000
  $pop3_extra
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
stop_dovecot() {
  kill "$dove" 2>/dev/null || true
  wait "$dove" 2>/dev/null || true
  dove=
  sleep 1
}
wait_port() { # PORT
  for _ in $(seq 100); do python3 -c "import socket;socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null && return; sleep 0.1; done
}
wait_port "$ours_port"
for name in "${!extra_port[@]}"; do wait_port "${extra_port[$name]}"; done

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
  "$bin/pop3-bench" --addr "127.0.0.1:$port" --password pw "${bench_tls[@]}" "$@" > "$work/$name.out"
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

idle_run() { # NAME PORT PATTERN SESSIONS
  local name=$1 port=$2 pat=$3 n=$4
  # Held long enough that every session is logged in before the first one quits.
  local hold=$(( 10 + n / 250 ))
  local base
  base=$(ps -eo rss=,args= | awk -v pat="$pat" 'index($0, pat) && !/awk -v pat/ {s += $1} END {print s+0}')
  # Resident memory and processes while the sessions are held.
  (sleep $(( hold - 3 )); ps -eo rss=,args= | awk -v pat="$pat" 'index($0, pat) && !/awk -v pat/ {s += $1; c++} END {print s+0, c+0}' > "$work/$name.steady") &
  local counter=$!
  run "$name-idle" "$port" "$pat" --users "$all_users" --sessions "$n" --concurrency "$n" --mode idle --hold "$hold"
  wait "$counter"
  local peak steady procs held
  peak=$(cat "$work/$name-idle.rss")
  read -r steady procs < "$work/$name.steady"
  # Per session actually held: a server out of file descriptors refuses the last few.
  held=$(sed -nE '1s/.*sessions ([0-9]+) ok.*/\1/p' "$work/$name-idle.out")
  [ "${held:-0}" -gt 0 ] || held=$n
  echo "   $name: $(( (steady - base) * 1024 / held )) bytes of resident memory per idle session at $held of $n sessions ($((steady / 1024)) MiB held, $((base / 1024)) MiB before, $((peak / 1024)) MiB peak, $procs processes)"
}

echo "== $(nproc) cores; TLS $tls; $users users x $per_user messages; $sessions sessions, $conc at once; open files limit $(ulimit -n)"
# Dovecot runs a process (about 3.4 MB) per session by default: at 10,000 sessions that is more
# memory than this machine has, so it gets DOVECOT_IDLE idle sessions (default: IDLE up to
# 2,000). Tuned, it gets IDLE.
dove_idle=${DOVECOT_IDLE:-$(( idle < 2000 ? idle : 2000 ))}
for who in ${SERVERS:-ours ${!extra_port[*]} dovecot dovecot-tuned}; do
  case $who in
    ours) port=$ours_port; pat="$bin/pop3 serve"; n_idle=$idle ;;
    dovecot|dovecot-tuned) ;;
    *) port=${extra_port[$who]}; pat="${extra_bin[$who]} serve"; n_idle=$idle ;;
  esac
  case $who in
    dovecot) start_dovecot "$work/dovecot" "$dove_port" 0; port=$dove_port; pat=dovecot; n_idle=$dove_idle ;;
    dovecot-tuned) [ -n "$dove" ] && stop_dovecot; start_dovecot "$work/dovecot-tuned" "$dove_port" 1; port=$dove_port; pat=dovecot; n_idle=$idle ;;
  esac
  echo "-- $who: short sessions (login, STAT, QUIT)"
  run "$who-short" "$port" "$pat" --users "$users" --sessions "$sessions" --concurrency "$conc" --mode short
  echo "-- $who: bulk download (login, STAT, UIDL, RETR every message, QUIT), one session per user"
  run "$who-bulk" "$port" "$pat" --users "$users" --sessions "$users" --concurrency "$users" --mode full
  if [ "$idle" -gt 0 ]; then
    echo "-- $who: concurrent idle sessions (logged in and held)"
    idle_run "$who" "$port" "$pat" "$n_idle"
  fi
done
echo "== ratios"
for d in ${!extra_port[*]} dovecot dovecot-tuned; do
  [ -e "$work/ours-short.out" ] && [ -e "$work/$d-short.out" ] || continue
  echo "   short sessions/s, ours/$d: $(ratio '([0-9.]+) sessions/s' ours-short "$d-short")"
  echo "   bulk MB/s, ours/$d: $(ratio '([0-9.]+) MB/s' ours-bulk "$d-bulk")"
done
