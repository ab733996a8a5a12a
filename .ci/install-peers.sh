#!/usr/bin/env bash
# Installs the real peers pop3-interop's tests run on 127.0.0.1 (Debian/Ubuntu):
#   dovecot-core   /usr/sbin/dovecot (the master; the tests start their own with -F -c)
#   dovecot-pop3d  /usr/lib/dovecot/pop3 and pop3-login
#   dovecot-lmtpd  /usr/lib/dovecot/lmtp: the LMTP server `pop3 fetch`'s lmtp target is
#                  tested against (pop3-cli/src/target/forward/tests.rs, tests/fetch_forward.rs)
#   curl           /usr/bin/curl (pop3:// and pop3s://)
#   python3        /usr/bin/python3 with poplib and ssl (libpython3.x-stdlib)
#   fail2ban       /usr/bin/fail2ban-regex (pop3-cli/tests/fail2ban.rs checks
#                  contrib/fail2ban/pop3.conf against a log the server wrote)
#   systemd        /usr/bin/systemd-socket-activate (hands `pop3 serve` its listeners through
#                  LISTEN_FDS, as systemd does) and systemd-analyze (verifies
#                  contrib/systemd/); pop3-cli/tests/production.rs. Nothing is started.
#   postgresql     /usr/lib/postgresql/*/bin/{initdb,postgres,pg_ctl,pg_isready,createdb}:
#                  pop3-store-postgres's tests start their own cluster in a temporary
#                  directory (as the `postgres` user when run as root); the packaged
#                  cluster is not started.
#   dovecot-imapd  /usr/lib/dovecot/imap and imap-login: the IMAP server `pop3 fetch`'s imap
#                  target appends into (pop3-cli/src/imap_append/tests.rs, tests/fetch_imap.rs)
#   swaks          an LMTP client for `pop3 serve --lmtp-listen` (pop3-cli/tests/lmtp.rs)
#   procmail       a real MDA: behind `pop3 deliver` and as `pop3 fetch`'s mda target
#   mpop, fetchmail  their UIDL state files are what `pop3 fetch --import-uidls` reads
#                  (pop3-cli/tests/fetch_config.rs runs them); bench/clients.sh compares
#   moto[server]   moto_server, an S3 server (pip, for the python3 on PATH): the tests of
#                  bodies in S3 (pop3-store-postgres/tests/s3.rs) start their own.
#   aiosmtpd       Python's SMTP server (pip, for the python3 on PATH): the smtp target's
#                  tests (pop3-cli/src/target/forward/tests.rs) start their own.
# Safe to run twice (apt-get install of installed packages changes nothing). Starts no
# service: a policy-rc.d that denies every start is in place while the packages install,
# so the packaged Dovecot does not come up on ports 110/995 (nor fail2ban's service).
set -euo pipefail

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi

policy=/usr/sbin/policy-rc.d
created_policy=no
if [ ! -e "$policy" ]; then
    # 101: "action forbidden by policy" (invoke-rc.d and deb-systemd-invoke honour it).
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod 755 "$policy"
    created_policy=yes
fi
cleanup() {
    if [ "$created_policy" = yes ]; then
        $sudo rm -f "$policy"
    fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends dovecot-core dovecot-pop3d dovecot-imapd dovecot-lmtpd curl python3 fail2ban systemd postgresql \
    swaks procmail mpop fetchmail

# moto and aiosmtpd from PyPI, with pip for whichever python3 is first on PATH (a Debian python3 needs
# python3-pip, and --break-system-packages for its externally managed environment).
if ! python3 -m pip --version >/dev/null 2>&1; then
    $sudo apt-get install -y -q --no-install-recommends python3-pip
fi
if ! python3 -c 'import moto.server' >/dev/null 2>&1; then
    $sudo python3 -m pip install -q 'moto[server]' \
        || $sudo python3 -m pip install -q --break-system-packages 'moto[server]'
fi
if ! python3 -c 'import aiosmtpd' >/dev/null 2>&1; then
    $sudo python3 -m pip install -q aiosmtpd \
        || $sudo python3 -m pip install -q --break-system-packages aiosmtpd
fi

# What the tests will find.
/usr/sbin/dovecot --version
test -x /usr/lib/dovecot/pop3-login
test -x /usr/lib/dovecot/lmtp
curl --version | head -n 1
python3 -c 'import poplib, ssl, sys; print("python", sys.version.split()[0], "with poplib")'
fail2ban-regex --version
command -v systemd-socket-activate
systemd-analyze --version | head -n 1
pg_bindir="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
for tool in initdb postgres pg_ctl pg_isready createdb; do
    test -x "$pg_bindir/$tool"
done
"$pg_bindir/postgres" --version
id -u postgres >/dev/null
python3 -c 'import moto, moto.server; print("moto", moto.__version__)'
python3 -c 'import aiosmtpd; print("aiosmtpd", aiosmtpd.__version__)'
test -x /usr/lib/dovecot/imap-login
swaks --version | head -n 1
command -v procmail
mpop --version | head -n 1
fetchmail --version 2>/dev/null | head -n 1 || command -v fetchmail
