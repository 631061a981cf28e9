#!/usr/bin/env python3
"""Compare a source tree with `rehydrate ls -R --json` of its snapshot, entry by entry.

usage: treecheck.py SRC LISTING.json
Checks that both have the same set of paths and, for each, the type, permission bits, uid, gid, size
(regular files and symlinks), mtime in ns, symlink target and link count. Exits 1 with one line per
difference.
"""
import json, os, stat, sys

src, listing = sys.argv[1], sys.argv[2]
with open(listing, 'rb') as f:
    entries = json.loads(f.read().decode('utf-8', 'surrogatepass'))

def fsbytes(s):
    # cli_put_json writes bytes that are not UTF-8 as lone surrogates \udcXX (surrogateescape).
    return s.encode('utf-8', 'surrogateescape')

got = {fsbytes(e['path']): e for e in entries}
want = {}
top = os.fsencode(src)
for root, dirs, files in os.walk(top):
    for n in dirs + files:
        p = os.path.join(root, n)
        want[os.path.relpath(p, top)] = os.lstat(p)

errors = []
for p in sorted(set(want) - set(got)):
    errors.append(f'missing from snapshot: {p!r}')
for p in sorted(set(got) - set(want)):
    errors.append(f'not in source: {p!r}')
types = {stat.S_IFREG: 'file', stat.S_IFDIR: 'dir', stat.S_IFLNK: 'symlink', stat.S_IFCHR: 'chr',
         stat.S_IFBLK: 'blk', stat.S_IFIFO: 'fifo', stat.S_IFSOCK: 'socket'}
for p in sorted(set(want) & set(got)):
    st, e = want[p], got[p]
    def diff(what, a, b):
        if a != b:
            errors.append(f'{p!r}: {what}: source {a!r}, snapshot {b!r}')
    diff('type', types[stat.S_IFMT(st.st_mode)], e['type'])
    diff('mode', stat.S_IMODE(st.st_mode), e['mode'])
    diff('uid', st.st_uid, e['uid'])
    diff('gid', st.st_gid, e['gid'])
    diff('mtime_ns', st.st_mtime_ns, e['mtime_ns'])
    if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
        diff('size', st.st_size, e['size'])
    if stat.S_ISLNK(st.st_mode):
        diff('target', os.readlink(os.path.join(top, p)), fsbytes(e['target']))
    if stat.S_ISREG(st.st_mode):
        diff('nlink', st.st_nlink, e['nlink'])
for line in errors[:50]:
    print(line)
sys.exit(1 if errors else 0)
