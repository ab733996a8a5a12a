#!/usr/bin/env bash
# Where the CPU of a bulk download goes, frontend against PostgreSQL: 20 users x 100 mixed
# messages imported into a PostgreSQL cluster of its own, then `pop3 serve` over it and over
# the same Maildirs, each given a warm-up and 10 bulk downloads (pop3-bench --mode full);
# prints the best MB/s and the CPU ticks (utime + stime, /proc) of the frontend and of
# PostgreSQL during the 10. Then, over PostgreSQL, the memory read-ahead holds: the frontend's
# RSS growth with IDLE sessions (default 1000) that each did RETR 1 and stopped. Needs
# postgresql and release builds (cargo build --release -p pop3-cli -p pop3-bench). Run as root
# (initdb as the postgres user) on a quiet machine.
set -e
cd "$(dirname "$0")/.."
bin=target/release
work=$(mktemp -d /tmp/cpuper.XXXX); chmod 755 $work
pgb=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
srv=
# Whatever fails, nothing is left running or on disk.
cleanup() {
  local rc=$?
  set +e
  [ -n "$srv" ] && kill "$srv" 2>/dev/null && wait "$srv" 2>/dev/null
  [ -f "$work/pg/postmaster.pid" ] && runuser -u postgres -- $pgb/pg_ctl -D $work/pg -m fast stop >/dev/null 2>&1
  [ "$rc" -ne 0 ] && cat $work/serve.*.log 2>/dev/null | tail -5
  rm -rf "$work"
}
trap cleanup EXIT
python3 bench/make-mail.py "$work/mail" 20 100
: > $work/users; for u in $(seq 0 19); do echo "user$u:{PLAIN}pw" >> $work/users; done
mkdir $work/pg; chown postgres $work/pg
runuser -u postgres -- $pgb/initdb -D $work/pg -U postgres -A trust >/dev/null
runuser -u postgres -- $pgb/pg_ctl -D $work/pg -l $work/pg/log -w -o "-p 57432 -k $work/pg -c listen_addresses=127.0.0.1 -c shared_buffers=256MB" start >/dev/null
db=postgresql://postgres@127.0.0.1:57432/postgres
$bin/pop3 import --postgres $db --maildir-root $work/mail --users $work/users >/dev/null
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
# This cluster's processes only: the postmaster and its children.
pgcpu() { local pm; pm=$(head -1 $work/pg/postmaster.pid); for p in $pm $(pgrep -P $pm); do awk '{print $14 + $15}' "/proc/$p/stat"; done | awk '{s+=$1} END {print s}'; }
for mode in pg maildir; do
  if [ $mode = pg ]; then args="--postgres $db"; else args="--maildir-root $work/mail --users $work/users"; fi
  $bin/pop3 serve $args --listen 127.0.0.1:57110 --allow-plaintext-auth --max-unauthenticated-per-ip 20000 --max-sessions-per-user 0 2>$work/serve.$mode.log &
  srv=$!; sleep 1
  $bin/pop3-bench --addr 127.0.0.1:57110 --password pw --users 20 --sessions 20 --concurrency 20 --mode full >/dev/null
  s0=$(cpu $srv); p0=$(pgcpu); t0=$(date +%s.%N)
  for i in 1 2 3 4 5 6 7 8 9 10; do $bin/pop3-bench --addr 127.0.0.1:57110 --password pw --users 20 --sessions 20 --concurrency 20 --mode full > $work/out.$mode.$i; done
  s1=$(cpu $srv); p1=$(pgcpu); t1=$(date +%s.%N)
  mb=$(cat $work/out.$mode.* | sed -nE 's/.* ([0-9.]+) MB\/s.*/\1/p' | sort -n | tail -1)
  echo "$mode: best $mb MB/s; frontend CPU $(( s1 - s0 )) ticks, postgres CPU $(( p1 - p0 )) ticks, wall $(python3 -c "print(round($t1-$t0,2))") s for 10 bulk runs"
  kill $srv; wait $srv 2>/dev/null || true; srv=
done

$bin/pop3 serve --postgres $db --listen 127.0.0.1:57110 --allow-plaintext-auth --max-unauthenticated-per-ip 20000 --max-sessions-per-user 0 --max-connections 20000 2>$work/serve.idle.log &
srv=$!; sleep 1
python3 - 57110 "${IDLE:-1000}" $srv <<'PY'
import socket, sys, time
port, n, pid = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
def rss():
    return next(int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS"))
base, held = rss(), []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    f = s.makefile("rb")
    f.readline()
    s.sendall(f"USER user{i % 20}\r\nPASS pw\r\nRETR 1\r\n".encode())
    f.readline(); f.readline(); f.readline()
    while f.readline() != b".\r\n":
        pass
    held.append((s, f))
time.sleep(1)
print(f"idle after RETR 1: {n} sessions, frontend RSS {base} -> {rss()} KiB, {(rss() - base) / n:.0f} KiB per session")
PY
