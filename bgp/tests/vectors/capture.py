#!/usr/bin/env python3
"""Passive BGP peer: accept one connection, send our OPEN and KEEPALIVEs,
print every message the peer sends as hex, one per line, for N seconds."""
import socket, struct, sys, time, select

listen, asn, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
def msg(t, body): return b'\xff'*16 + struct.pack('!HB', 19+len(body), t) + body
caps = bytes([65,4]) + struct.pack('!I', asn)
caps += bytes([1,4,0,1,0,1]) + bytes([1,4,0,2,0,1]) + bytes([2,0])
caps += bytes([64,2+8, 0x00, 120]) + bytes([0,1,1,0x80, 0,2,1,0x80])
caps += bytes([5,6, 0,1, 0,1, 0,2])
opt = bytes([2, len(caps)]) + caps
open_ = msg(1, struct.pack('!BHH4sB', 4, asn if asn < 65536 else 23456, 9, socket.inet_aton('10.99.0.1'), len(opt)) + opt)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((listen, 179)); s.listen(1); s.settimeout(20)
c, _ = s.accept()
c.sendall(open_); c.sendall(msg(4, b''))
buf = b''; end = time.time() + secs; last_ka = 0
while time.time() < end:
    if time.time() - last_ka > 1: c.sendall(msg(4, b'')); last_ka = time.time()
    r, _, _ = select.select([c], [], [], 0.2)
    if r:
        d = c.recv(65536)
        if not d: break
        buf += d
        while len(buf) >= 19:
            l = struct.unpack('!H', buf[16:18])[0]
            if len(buf) < l: break
            print(buf[:l].hex(), flush=True); buf = buf[l:]
