#!/usr/bin/env python3
"""Turn a catalog into a hostile one: rename entries "ab" to ".." and "a_b" to "a/b", and recompute
their checksums (doc/format.md, "Snapshot catalog"), so that only the reader's name checks and the
restore's own safety stand between such a catalog and a write outside the target.

usage: hostile_catalog.py SNAPSHOT.snap
"""
import struct, sys
import xxhash

ENTRY, TABLE = 208, 128
path = sys.argv[1]
data = bytearray(open(path, 'rb').read())
count = struct.unpack_from('<Q', data, 16)[0]
changed = 0
for i in range(count):
    e = TABLE + i * ENTRY
    name_len = struct.unpack_from('<I', data, e + 20)[0]
    name_off, extra_off = struct.unpack_from('<QQ', data, e + 120)
    extra_len = struct.unpack_from('<I', data, e + 136)[0]
    name = bytes(data[name_off:name_off + name_len])
    new = {b'ab': b'..', b'a_b': b'a/b'}.get(name)
    if new is None:
        continue
    data[name_off:name_off + name_len] = new
    seed = xxhash.xxh3_64_intdigest(bytes(data[e:e + 200]))
    payload = bytes(data[name_off:extra_off + extra_len])
    struct.pack_into('<Q', data, e + 200, xxhash.xxh3_64_intdigest(payload, seed=seed))
    changed += 1
if changed != 2:
    sys.exit(f'expected to rename 2 entries, renamed {changed}')
open(path, 'wb').write(data)
