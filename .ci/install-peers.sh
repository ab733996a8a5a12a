#!/usr/bin/env bash
# Installs the real peers pop3-interop's tests run on 127.0.0.1 (Debian/Ubuntu):
#   dovecot-core   /usr/sbin/dovecot (the master; the tests start their own with -F -c)
#   dovecot-pop3d  /usr/lib/dovecot/pop3 and pop3-login
#   curl           /usr/bin/curl (pop3:// and pop3s://)
#   python3        /usr/bin/python3 with poplib and ssl (libpython3.x-stdlib)
#   fail2ban       /usr/bin/fail2ban-regex (pop3-cli/tests/fail2ban.rs checks
#                  contrib/fail2ban/pop3.conf against a log the server wrote)
#   systemd        /usr/bin/systemd-socket-activate (hands `pop3 serve` its listeners through
#                  LISTEN_FDS, as systemd does) and systemd-analyze (verifies
#                  contrib/systemd/); pop3-cli/tests/production.rs. Nothing is started.
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
$sudo apt-get install -y -q --no-install-recommends dovecot-core dovecot-pop3d curl python3 fail2ban systemd

# What the tests will find.
/usr/sbin/dovecot --version
test -x /usr/lib/dovecot/pop3-login
curl --version | head -n 1
python3 -c 'import poplib, ssl, sys; print("python", sys.version.split()[0], "with poplib")'
fail2ban-regex --version
command -v systemd-socket-activate
systemd-analyze --version | head -n 1
