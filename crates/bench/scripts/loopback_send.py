#!/usr/bin/env python3
"""Kernel CPU time of one small loopback TCP send on this machine.

A writer process sends N frames of SIZE bytes (one send() each) to a reader
process that drains them; the writer's system time per send is the floor
under any server that writes one frame per delivery, whatever its language.

    python3 crates/bench/scripts/loopback_send.py [SIZE] [N]
"""
import os
import resource
import socket
import sys

SIZE = int(sys.argv[1]) if len(sys.argv) > 1 else 250
N = int(sys.argv[2]) if len(sys.argv) > 2 else 200_000

listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(1)
port = listener.getsockname()[1]

if os.fork() == 0:
    conn = socket.create_connection(("127.0.0.1", port))
    received = 0
    while received < N * SIZE:
        chunk = conn.recv(65536)
        if not chunk:
            break
        received += len(chunk)
    os._exit(0)

sender, _ = listener.accept()
sender.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
frame = b"x" * SIZE
before = resource.getrusage(resource.RUSAGE_SELF)
for _ in range(N):
    sender.send(frame)
after = resource.getrusage(resource.RUSAGE_SELF)
os.wait()
user = (after.ru_utime - before.ru_utime) / N * 1e6
system = (after.ru_stime - before.ru_stime) / N * 1e6
print(f"{N} sends of {SIZE} B: {system:.2f} us system + {user:.2f} us user CPU per send")
