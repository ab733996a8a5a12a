#!/usr/bin/env python3
"""Fetch every message of a maildrop with Python's poplib, for bench/clients.sh.

    poplib_fetch.py HOST PORT USER PASS OUTDIR

USER/PASS login, STAT, one RETR per message, QUIT (nothing deleted). Each message goes to
OUTDIR/N with CRLF line ends as on the wire: poplib returns the lines without their ends
(and dot-unstuffed), so they are joined with CRLF and the last line's CRLF is put back.
Prints "N messages, B bytes".
"""

import os
import poplib
import sys


def main() -> None:
    host, port, user, password, outdir = sys.argv[1:6]
    os.makedirs(outdir, exist_ok=True)
    pop = poplib.POP3(host, int(port))
    pop.user(user)
    pop.pass_(password)
    count, _size = pop.stat()
    total = 0
    for n in range(1, count + 1):
        _resp, lines, _octets = pop.retr(n)
        data = b"\r\n".join(lines) + b"\r\n"
        total += len(data)
        with open(os.path.join(outdir, str(n)), "wb") as f:
            f.write(data)
    pop.quit()
    print(f"{count} messages, {total} bytes")


if __name__ == "__main__":
    main()
