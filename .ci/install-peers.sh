#!/usr/bin/env bash
# Installs the real peers the interoperability tests start on 127.0.0.1: Dovecot's POP3
# server, curl and Python 3 (poplib). Safe to run twice; starts no service.
set -euo pipefail
need=()
command -v dovecot >/dev/null 2>&1 && [ -x /usr/lib/dovecot/pop3 ] || need+=(dovecot-core dovecot-pop3d)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if [ "${#need[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # Debian's maintainer scripts try to start the service; a container has no init, so the
    # start fails harmlessly (policy-rc.d) and the tests run their own instance.
    apt-get install -y -q --no-install-recommends "${need[@]}"
fi
dovecot --version
curl --version | head -n 1
python3 --version
