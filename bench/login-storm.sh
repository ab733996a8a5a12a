#!/usr/bin/env bash
# A login storm against sessions that are downloading: 20 sessions RETR every message of their
# maildrop again and again while 200 logins of users with `{SHA512-CRYPT}` passwords arrive at
# once; prints the RETR latency of the downloads that started during the storm, and the
# storm's own login latency.
#
#   bench/login-storm.sh [POP3_BINARY...]
#
# Each binary given (default: this tree's release `pop3`) is started in turn over identical
# copies of the mail, so a build from before a change can be measured in the same run, e.g.
# bench/login-storm.sh /path/to/old/pop3 target/release/pop3. The load generator is always
# this tree's `pop3-bench`. EXTRA="--auth-threads 1" passes flags to every server.
#
# Needs: python3, doveadm (Dovecot, .ci/install-peers.sh) to make the SHA512-CRYPT hash.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p pop3-cli -p pop3-bench
bins=("$@")
[ "${#bins[@]}" -gt 0 ] || bins=(target/release/pop3)
work="$(mktemp -d "${TMPDIR:-/tmp}/pop3-storm.XXXX")"
trap 'kill $server 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
server=

# 20 downloaders' maildrops: 100 messages of 30 kB each.
python3 - "$work/mail" <<'PY'
import os, sys
root = sys.argv[1]
line = "The quick brown fox jumps over the lazy dog, line of mail.\n"
for u in range(20):
    d = os.path.join(root, f"dl{u}")
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    for i in range(100):
        with open(os.path.join(d, "new", f"{1700000000+i}.M{i}P{u}.storm"), "w") as f:
            f.write(f"Subject: message {i}\n\n" + line * 500)
PY
hash=$(doveadm pw -s SHA512-CRYPT -p storm-secret)
: > "$work/users"
for u in $(seq 0 19); do echo "dl$u:{PLAIN}pw" >> "$work/users"; done
for u in $(seq 0 199); do
  echo "st$u:$hash" >> "$work/users"
  mkdir -p "$work/mail/st$u/cur" "$work/mail/st$u/new" "$work/mail/st$u/tmp"
done

for bin in "${bins[@]}"; do
  # The storm comes from 127.0.0.1 alone: lift the per-address limit on connections that have
  # not logged in (32 by default) for builds that have it.
  unlimited=
  if "$bin" serve --help 2>/dev/null | grep -q -- --max-unauthenticated-per-ip; then
    unlimited="--max-unauthenticated-per-ip 2000"
  fi
  port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  # shellcheck disable=SC2086
  "$bin" serve --listen "127.0.0.1:$port" --maildir-root "$work/mail" --users "$work/users" \
      --allow-plaintext-auth --max-connections 2000 $unlimited ${EXTRA:-} 2>/dev/null &
  server=$!
  for _ in $(seq 100); do
    python3 -c "import socket;socket.create_connection(('127.0.0.1',$port))" 2>/dev/null && break
    sleep 0.1
  done
  echo "== $bin ${EXTRA:-}"
  target/release/pop3-bench --addr "127.0.0.1:$port" --user-prefix dl --users 20 --password pw \
      --mode full --concurrency 20 --sessions 100000 \
      --storm 200 --storm-prefix st --storm-password storm-secret
  kill "$server"; wait "$server" 2>/dev/null || true
done
