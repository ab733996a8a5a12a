#!/usr/bin/env python3
"""The benchmarks' mail: USERS maildirs (user0, user1, ...) under ROOT, each with PER_USER
messages in new/ of 2, 8, 30 or 120 kB (LF line ends), the same every time (seeded).

    bench/make-mail.py ROOT USERS PER_USER
"""
import os
import random
import sys

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
