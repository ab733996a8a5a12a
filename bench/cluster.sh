#!/usr/bin/env bash
# Scale-out figures (issue 14): `pop3 serve` over PostgreSQL against `pop3 serve` over Maildir
# against tuned Dovecot, then 1, 2 and 3 frontends over one PostgreSQL, then LMTP deliveries
# into our server (Maildir and PostgreSQL) against Dovecot's LMTP into Maildir. Everything runs
# here, on 127.0.0.1, in a temporary directory: a PostgreSQL cluster of its own (initdb, as
# the postgres user when run as root; durable settings: fsync and synchronous_commit on),
# the frontends, Dovecot.
#
#   bench/cluster.sh [USERS] [MESSAGES_PER_USER] [SESSIONS] [CONCURRENCY] [LMTP_MESSAGES]
#
# Loads (pop3-bench and lmtp-bench, release builds): SESSIONS short sessions (login, STAT,
# QUIT), CONCURRENCY at once; a bulk download (every user's messages, one session per user,
# all at once; BULK_RUNS times, default 5, and the median reported), on shared cores and
# again with PostgreSQL pinned to a core of its own (taskset); LMTP_MESSAGES deliveries of
# 4 KB over 8 connections. With N frontends, N load
# generators run at once, one per frontend, each with 1/N of the sessions, and their rates
# are added. On a 2-core machine the cores, not PostgreSQL, are the first limit: the point
# is where adding frontends stops adding throughput.
#
# Needs: postgresql, dovecot-core, dovecot-pop3d, dovecot-lmtpd (.ci/install-peers.sh).
set -euo pipefail
users="${1:-20}"
per_user="${2:-100}"
sessions="${3:-4000}"
conc="${4:-20}"
lmtp_messages="${5:-4000}"
cd "$(dirname "$0")/.."
cargo build -q --release -p pop3-cli -p pop3-bench
bin="$PWD/target/release"
work="$(mktemp -d "${TMPDIR:-/tmp}/pop3-cluster.XXXX")"
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${pg_ctl:-}" ] && as_pg "$pg_ctl" -D "$work/pg" -m fast stop >/dev/null 2>&1 || true
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do python3 -c "import socket;socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null && return; sleep 0.1; done; echo "nothing on $1" >&2; exit 1; }

# The mail: USERS maildirs of PER_USER mixed-size messages, as bench/compare.sh makes them.
python3 bench/make-mail.py "$work/mail" "$users" "$per_user"
: > "$work/users"
for u in $(seq 0 $((users - 1))); do echo "user$u:{PLAIN}pw::::::" >> "$work/users"; done
cp -a "$work/mail" "$work/mail-dovecot"
chown -R 65534:65534 "$work/mail-dovecot"

# PostgreSQL, its own cluster.
pg_bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
pg_ctl="$pg_bin/pg_ctl"
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
mkdir -p "$work/pg" && [ "$(id -u)" -eq 0 ] && chown postgres "$work/pg"
as_pg "$pg_bin/initdb" -D "$work/pg" -U postgres -A trust >/dev/null
pg_port=$(free_port)
as_pg "$pg_ctl" -D "$work/pg" -l "$work/pg/log" -w -o "-p $pg_port -k $work/pg -c listen_addresses=127.0.0.1 -c max_connections=300 -c shared_buffers=256MB" start >/dev/null
db="postgresql://postgres@127.0.0.1:$pg_port/postgres"
echo "== $(nproc) cores; $users users x $per_user messages; PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') (fsync on)"
"$bin/pop3" import --postgres "$db" --maildir-root "$work/mail" --users "$work/users"

common=(--allow-plaintext-auth --max-connections 20000 --max-unauthenticated-per-ip 20000 --max-sessions-per-user 0)
start_frontend() { # NAME ARGS...: sets fport and flmtp
  local name=$1; shift
  fport=$(free_port); flmtp=$(free_port)
  "$bin/pop3" serve --listen "127.0.0.1:$fport" --lmtp-listen "127.0.0.1:$flmtp" "${common[@]}" "$@" 2>"$work/$name.log" &
  pids+=($!)
  wait_port "$fport"; wait_port "$flmtp"
}
load() { # OUT PORT ARGS...
  local out=$1 port=$2; shift 2
  "$bin/pop3-bench" --addr "127.0.0.1:$port" --password pw "$@" > "$out"
}
# CPU seconds used so far by PostgreSQL's processes (utime + stime of the live ones).
pg_cpu() { for p in $(pgrep -x postgres); do awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null; done | awk -v hz="$(getconf CLK_TCK)" '{s += $1} END {printf "%.1f", s / hz}'; }
field() { python3 -c "import re,sys; print(re.search(r'$1', open(sys.argv[1]).read()).group(1))" "$2"; }

# --- one frontend each: PostgreSQL, Maildir, tuned Dovecot (bench/compare.sh's settings)
start_frontend pg1 --postgres "$db"; pg1=$fport pg1_lmtp=$flmtp
start_frontend maildir --maildir-root "$work/mail" --users "$work/users"; md=$fport md_lmtp=$flmtp
# The median of BULK_RUNS bulk downloads (one is over in a fraction of a second: a single run
# is at the mercy of a noisy neighbour). OUT PORT [WRAPPER...]: writes OUT.1.. and prints it.
bulk_runs="${BULK_RUNS:-5}"
bulk() {
  local out=$1 port=$2; shift 2
  for i in $(seq "$bulk_runs"); do
    "$@" "$bin/pop3-bench" --addr "127.0.0.1:$port" --password pw --users "$users" --sessions "$users" --concurrency "$users" --mode full > "$out.$i"
  done
  cat "$out".* | sed -nE 's/.* ([0-9.]+) MB\/s.*/\1/p' | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'
}
for who in pg1 md; do
  port=${!who}
  # A warm-up pass (not counted): connections pooled, statements prepared, files cached.
  load /dev/null "$port" --users "$users" --sessions "$users" --concurrency "$users" --mode full
  load "$work/$who-short" "$port" --users "$users" --sessions "$sessions" --concurrency "$conc" --mode short
  bulk "$work/$who-bulk" "$port" > "$work/$who-bulk-median"
done
SERVERS=dovecot-tuned bench/compare.sh "$users" "$per_user" "$sessions" "$conc" 0 > "$work/dovecot.txt"
dove_short=$(grep -A2 'dovecot-tuned: short' "$work/dovecot.txt" | sed -nE 's/.* ([0-9.]+) sessions\/s.*/\1/p' | head -1)
dove_bulk=$(grep -A2 'dovecot-tuned: bulk' "$work/dovecot.txt" | sed -nE 's/.* ([0-9.]+) MB\/s.*/\1/p' | head -1)
echo "-- one frontend: short sessions/s, bulk MB/s (ours: median of $bulk_runs)"
printf '   %-28s %10s %10s\n' "pop3 serve, PostgreSQL" "$(field '([0-9.]+) sessions/s' "$work/pg1-short")" "$(cat "$work/pg1-bulk-median")"
printf '   %-28s %10s %10s\n' "pop3 serve, Maildir" "$(field '([0-9.]+) sessions/s' "$work/md-short")" "$(cat "$work/md-bulk-median")"
printf '   %-28s %10s %10s\n' "Dovecot tuned, Maildir" "$dove_short" "$dove_bulk"

# --- the same bulk download with PostgreSQL on a core of its own, as it is when the database
# runs on another machine: PostgreSQL (the postmaster and every backend) on the last core, the
# frontend and the load generator on the others, for both stores.
cores=$(nproc)
if [ "$cores" -ge 2 ]; then
  db_core=$((cores - 1)); rest="0-$((cores - 2))"
  pg_pids() { local pm; pm=$(head -1 "$work/pg/postmaster.pid"); echo "$pm" $(pgrep -P "$pm"); }
  pin() { for p in "${@:2}"; do taskset -a -p -c "$1" "$p" >/dev/null; done; }
  pin "$db_core" $(pg_pids)
  pin "$rest" "${pids[0]}" "${pids[1]}"
  pinned_pg=$(bulk "$work/pg1-pinned" "$pg1" taskset -c "$rest")
  pinned_md=$(bulk "$work/md-pinned" "$md" taskset -c "$rest")
  pin "0-$db_core" $(pg_pids) "${pids[0]}" "${pids[1]}"
  echo "-- one frontend, PostgreSQL on core $db_core, frontend and load on $rest: bulk MB/s (median of $bulk_runs)"
  printf '   %-28s %10s\n' "pop3 serve, PostgreSQL" "$pinned_pg" "pop3 serve, Maildir" "$pinned_md"
fi

# --- 1, 2, 3 frontends over the one database
start_frontend pg2 --postgres "$db"; pg2=$fport
start_frontend pg3 --postgres "$db"; pg3=$fport
echo "-- N frontends over one PostgreSQL: short sessions/s (sum), bulk MB/s (sum), PostgreSQL CPU s"
for n in 1 2 3; do
  ports=("$pg1" "$pg2" "$pg3")
  for kind in short bulk; do
    pg_cpu0=$(pg_cpu)
    loads=()
    for i in $(seq 0 $((n - 1))); do
      if [ "$kind" = short ]; then
        load "$work/n$n-$kind-$i" "${ports[$i]}" --users "$users" --sessions $((sessions / n)) --concurrency "$conc" --mode short &
      else
        load "$work/n$n-$kind-$i" "${ports[$i]}" --users "$users" --sessions "$users" --concurrency "$users" --mode full &
      fi
      loads+=($!)
    done
    for j in "${loads[@]}"; do wait "$j"; done
    pg_cpu1=$(pg_cpu)
    eval "cpu_$kind=$(python3 -c "print(round($pg_cpu1 - $pg_cpu0, 1))")"
  done
  short_sum=$(cat "$work"/n$n-short-* | sed -nE 's/.* ([0-9.]+) sessions\/s.*/\1/p' | awk '{s+=$1} END {printf "%.0f", s}')
  bulk_sum=$(cat "$work"/n$n-bulk-* | sed -nE 's/.* ([0-9.]+) MB\/s.*/\1/p' | awk '{s+=$1} END {printf "%.0f", s}')
  printf '   %d frontend(s): %8s sessions/s %8s MB/s   PostgreSQL CPU %ss (short) %ss (bulk)\n' "$n" "$short_sum" "$bulk_sum" "$cpu_short" "$cpu_bulk"
done

# --- LMTP deliveries: ours into Maildir and into PostgreSQL, Dovecot's LMTP into Maildir
lmtp() { "$bin/lmtp-bench" --addr "127.0.0.1:$1" --connections 8 --messages "$lmtp_messages" --size 4000 --users "$users"; }
echo "-- LMTP, $lmtp_messages deliveries of 4 KB over 8 connections (each durable before its 250)"
echo "   pop3 serve, Maildir:     $(lmtp "$md_lmtp")"
echo "   pop3 serve, PostgreSQL:  $(lmtp "$pg1_lmtp")"
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
dl_port=$(free_port)
mkdir -p "$work/dl/run" "$work/dl/state"
cat > "$work/dl/dovecot.conf" <<CONF
base_dir = $work/dl/run
state_dir = $work/dl/state
log_path = $work/dl/dovecot.log
protocols = lmtp
listen = 127.0.0.1
ssl = no
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
mail_location = maildir:$work/mail-dovecot/%n
lmtp_save_to_detail_mailbox = no
passdb {
  driver = passwd-file
  args = $work/users
}
userdb {
  driver = static
  args = uid=65534 gid=65534 home=$work/mail-dovecot/%n allow_all_users=yes
}
auth_username_format = %n
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $dl_port
  }
  process_min_avail = $(nproc)
  service_count = 0
  client_limit = 100
}
service anvil {
  chroot =
}
CONF
dovecot -F -c "$work/dl/dovecot.conf" &
pids+=($!)
wait_port "$dl_port"
echo "   Dovecot LMTP, Maildir:   $(lmtp "$dl_port")"
