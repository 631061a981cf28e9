#!/usr/bin/env python3
"""Compare two directory trees entry by entry, as a restore must reproduce them.

usage: treediff.py SRC DST [--ignore-atime] [--skip NAME]...
For every path: type, full mode (setuid, setgid, sticky), uid, gid, mtime in ns, size, content
(SHA-256), symlink target, device numbers, xattrs (except user.rehydrate.*), the partition into
hard-link groups, and sparseness (a source file that is mostly holes must stay mostly holes).
--skip NAME leaves out NAME (a path relative to SRC and DST) and everything below it in DST: what DST
holds beyond its source, such as a Windows volume's "System Volume Information".
Exits 1 with one line per difference (at most 50 shown).
"""
import hashlib, os, stat, sys

def walk(top, skip=()):
    out = {}
    for root, dirs, files in os.walk(top):
        for n in dirs + files:
            p = os.path.join(root, n)
            rel = os.path.relpath(p, top)
            if rel not in skip:
                out[rel] = os.lstat(p)
        dirs[:] = [n for n in dirs if os.path.relpath(os.path.join(root, n), top) not in skip]
    return out

def digest(p):
    h = hashlib.sha256()
    with open(p, 'rb') as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)

def xattrs(p):
    try:
        names = os.listxattr(p, follow_symlinks=False)
    except OSError:
        return {}
    return {n: os.getxattr(p, n, follow_symlinks=False) for n in names if not n.startswith('user.rehydrate.')}

src, dst = os.fsencode(sys.argv[1]), os.fsencode(sys.argv[2])
skip = {os.fsencode(sys.argv[i + 1]) for i in range(3, len(sys.argv) - 1) if sys.argv[i] == '--skip'}
a, b = walk(src), walk(dst, skip)
errors = []
for p in sorted(set(a) - set(b)):
    errors.append(f'missing: {p!r}')
for p in sorted(set(b) - set(a)):
    errors.append(f'extra: {p!r}')
groups_a, groups_b = {}, {}
for p in sorted(set(a) & set(b)):
    x, y = a[p], b[p]
    sp, dp = os.path.join(src, p), os.path.join(dst, p)
    def diff(what, u, v):
        if u != v:
            errors.append(f'{p!r}: {what}: {u!r} != {v!r}')
    diff('type', stat.S_IFMT(x.st_mode), stat.S_IFMT(y.st_mode))
    if stat.S_IFMT(x.st_mode) != stat.S_IFMT(y.st_mode):
        continue
    diff('mode', oct(x.st_mode), oct(y.st_mode))
    diff('uid', x.st_uid, y.st_uid)
    diff('gid', x.st_gid, y.st_gid)
    diff('mtime_ns', x.st_mtime_ns, y.st_mtime_ns)
    diff('xattrs', xattrs(sp), xattrs(dp))
    if stat.S_ISLNK(x.st_mode):
        diff('target', os.readlink(sp), os.readlink(dp))
    elif stat.S_ISREG(x.st_mode):
        diff('size', x.st_size, y.st_size)
        if x.st_size == y.st_size:
            diff('content', digest(sp), digest(dp))
        if x.st_blocks * 512 < x.st_size // 2:  # mostly holes in the source
            if y.st_blocks * 512 > x.st_blocks * 512 + (1 << 20):
                errors.append(f'{p!r}: not sparse: {y.st_blocks * 512} bytes allocated, source {x.st_blocks * 512}')
        if x.st_nlink > 1:
            groups_a.setdefault((x.st_dev, x.st_ino), set()).add(p)
            groups_b.setdefault((y.st_dev, y.st_ino), set()).add(p)
    elif stat.S_ISCHR(x.st_mode) or stat.S_ISBLK(x.st_mode):
        diff('rdev', x.st_rdev, y.st_rdev)
if sorted(map(sorted, groups_a.values())) != sorted(map(sorted, groups_b.values())):
    errors.append(f'hard-link groups differ: {sorted(map(sorted, groups_a.values()))} != '
                  f'{sorted(map(sorted, groups_b.values()))}')
for line in errors[:50]:
    print(line)
sys.exit(1 if errors else 0)
