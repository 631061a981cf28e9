#!/usr/bin/env python3
"""windedup_check.py SRC OUT XATTR — checks, independently of the C code, what windedup-mk wrote.

Every container: names, the three Cthr copies, both Rrtl copies, every record's magic, version, header
CRC-64 and payload CRC-64 (own bitwise-table implementation of the reflected polynomial
0x9a6c9329ac4bc9b5), 8-byte alignment, padding closing sessions on 4 KiB. Every file of SRC: the
reparse buffer (tag, lengths, zlib CRC-32), its stream maps (found at the recorded offset or through
the Rrtl), their Smap entries (contiguous end offsets covering the file), the data chunks they name
(sequence number, stored size, digest = SHA-512[:32] of the raw chunk) and, for files up to 64 MiB, the
content itself. Prints a summary line of counts as JSON (records counted in every container and
generation: data_records, stream_records, compressed_records; "compressed" counts the Smap entries that
name a compressed chunk); exits 1 on the first failure.
"""
import hashlib
import json
import os
import re
import struct
import sys
import zlib

POLY = 0x9A6C9329AC4BC9B5
TABLE = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ POLY if c & 1 else c >> 1
    TABLE.append(c)


def crc64(b):
    c = 0
    for x in b:
        c = (c >> 8) ^ TABLE[(c ^ x) & 0xFF]
    return c ^ 0xFFFFFFFFFFFFFFFF


def fail(msg):
    sys.exit('windedup_check: ' + msg)


def u32(b, o):
    return struct.unpack_from('<I', b, o)[0]


def u64(b, o):
    return struct.unpack_from('<Q', b, o)[0]


HDR = {1: 0x58, 2: 0x68, 4: 0x30}  # header length by record type
stats = {'containers': 0, 'older_generations': 0, 'records': 0, 'paddings': 0, 'sessions_max': 0,
         'rrtl_entries': 0, 'stale_offsets_followed': 0, 'files': 0, 'plain': 0, 'formats': {},
         'parts_max': 0, 'shared_refs': 0, 'compressed': 0, 'content_checked': 0,
         'data_records': 0, 'stream_records': 0, 'compressed_records': 0}


def parse_container(path, cid, gen):
    d = open(path, 'rb').read()
    name = os.path.basename(path)
    cthr = []
    for at in (0, 0x1000, 0x2000):
        h = d[at:at + 0x40]
        if h[:8] != b'Cthr\x01\x04\x04\x01':
            fail('%s: no Cthr at %#x' % (name, at))
        if crc64(h[:0x38]) != u64(h, 0x38):
            fail('%s: Cthr at %#x: CRC-64 mismatch' % (name, at))
        if u32(h, 0x10) != cid or u32(h, 0x14) != gen or u32(h, 0x30) != 0x4000:
            fail('%s: Cthr at %#x: id, generation or Rrtl offset wrong' % (name, at))
        cthr.append(h)
    if cthr[1] != cthr[2]:
        fail('%s: the Cthr copies at 0x1000 and 0x2000 differ' % name)
    usn, chunks, next_id, valid = u64(cthr[1], 8), u32(cthr[1], 0x18), u32(cthr[1], 0x1C), u32(cthr[1], 0x20)
    if u64(cthr[0], 8) > usn or (u64(cthr[0], 8) < usn and u32(cthr[0], 0x20) >= valid):
        fail('%s: the copy at 0 is not an older state' % name)
    if valid != len(d):
        fail('%s: valid data length %#x, file %#x' % (name, valid, len(d)))
    stats['sessions_max'] = max(stats['sessions_max'], usn)
    rr = d[0x3000:0x4000]
    if rr != d[0x4000:0x5000] or rr[:8] != b'Rrtl\x01\x03\x03\x01' or crc64(rr[:0x18]) != u64(rr, 0x18):
        fail('%s: bad Rrtl' % name)
    rrtl = {}
    for i in range(u32(rr, 8)):
        rrtl[u32(rr, 0x20 + 8 * i)] = u32(rr, 0x24 + 8 * i)
    stats['rrtl_entries'] += len(rrtl)
    recs, off, seen = {}, 0x5000, 0
    while off < valid:
        if off % 8:
            fail('%s: record at %#x not 8-byte aligned' % (name, off))
        if d[off:off + 8] != b'Ckhr\x01\x03\x03\x01':
            fail('%s: no Ckhr at %#x' % (name, off))
        seq, plen, typ, field = struct.unpack_from('<IIHH', d, off + 8)
        if typ not in HDR or field != HDR[typ] - 0x30:
            fail('%s: record at %#x: type %d, size field %#x' % (name, off, typ, field))
        hl = HDR[typ]
        crc_at = hl - 8
        if crc64(d[off:off + crc_at]) != u64(d, off + crc_at):
            fail('%s: record at %#x: header CRC-64 mismatch' % (name, off))
        payload = d[off + hl:off + hl + plen]
        if typ == 4:
            stats['paddings'] += 1
            if d[off + 0x20:off + 0x28] != b'\xff' * 8 or seq != 0 or any(payload):
                fail('%s: padding at %#x malformed' % (name, off))
            if (off + hl + plen) % 0x1000 and off + hl + plen != valid:
                pass  # a moved record's old place is padding of the record's own length
        else:
            if crc64(payload) != u64(d, off + hl - 16):
                fail('%s: record at %#x: payload CRC-64 mismatch' % (name, off))
            seen += 1
            recs[off] = (seq, typ, payload, d[off:off + hl])
            stats['data_records' if typ == 1 else 'stream_records'] += 1
            stats['compressed_records'] += typ == 1 and u32(d, off + 0x20) != 0
        off = (off + hl + plen + 7) & ~7
    if seen != chunks or next_id != max([r[0] for r in recs.values()], default=0) + 1:
        fail('%s: Cthr counts %d chunks, next id %d; found %d' % (name, chunks, next_id, seen))
    if valid % 0x1000:
        fail('%s: does not end on 4 KiB' % name)
    stats['records'] += seen
    return {'recs': recs, 'rrtl': rrtl}


def load_store(out):
    cs = os.path.join(out, 'System Volume Information', 'Dedup', 'ChunkStore')
    ddp = os.listdir(cs)
    if len(ddp) != 1 or not re.fullmatch(r'\{[0-9A-F]{8}(-[0-9A-F]{4}){3}-[0-9A-F]{12}\}\.ddp', ddp[0]):
        fail('chunk store directory: %r' % ddp)
    store = {}
    for kind in ('Data', 'Stream'):
        d = os.path.join(cs, ddp[0], kind)
        gens = {}
        for n in sorted(os.listdir(d)):
            m = re.fullmatch(r'([0-9a-f]{8})\.([0-9a-f]{8})\.ccc', n)
            if not m:
                fail('%s/%s: not a container name' % (kind, n))
            cid, gen = int(m[1], 16), int(m[2], 16)
            gens.setdefault(cid, {})[gen] = parse_container(os.path.join(d, n), cid, gen)
            stats['containers'] += 1
        for cid, g in gens.items():
            stats['older_generations'] += len(g) - 1
        store[kind] = gens
    return store, ddp[0][1:37]


def find(store, kind, cid, gen, off, seq, check):
    """The record a reference means: at its offset, else through the container's Rrtl."""
    gens = store[kind].get(cid)
    if not gens:
        fail('%s container %08x missing' % (kind, cid))
    c = gens[gen if gen is not None else max(gens)]
    r = c['recs'].get(off)
    if r and r[0] == seq and check(r):
        return r
    if seq in c['rrtl'] and c['rrtl'][seq] in c['recs']:
        r = c['recs'][c['rrtl'][seq]]
        if r[0] == seq and check(r):
            stats['stale_offsets_followed'] += 1
            return r
    fail('%s %08x: no record %d at %#x nor in the Rrtl' % (kind, cid, seq, off))


def guid_text(b):
    a, b2, c = struct.unpack_from('<IHH', b)
    return '%08X-%04X-%04X-%s-%s' % (a, b2, c, b[8:10].hex().upper(), b[10:16].hex().upper())


def refs_of(rp, rel, guid):
    """(format, [(seq, container, offset, smap size, digest prefix, begin, end)], size or None)."""
    if u32(rp, 0) != 0x80000013:
        fail('%s: tag %#x' % (rel, u32(rp, 0)))
    L = struct.unpack_from('<H', rp, 4)[0]
    fmt, L2 = struct.unpack_from('<HH', rp, 8)
    if L != len(rp) - 8 or (fmt != 0x0103 and L2 != L) or L % 4:
        fail('%s: reparse lengths %d/%d for %d bytes' % (rel, L, L2, len(rp)))
    if zlib.crc32(rp[8:-4]) != u32(rp, len(rp) - 4):
        fail('%s: reparse CRC-32 mismatch' % rel)
    if fmt == 0x0201:
        e = 0x40
        g, size = rp[0x20:0x30], u64(rp, 0x10)
        refs = [(u32(rp, e), u32(rp, e + 4), u32(rp, e + 8), u32(rp, e + 0x18), rp[e + 0x20:e + 0x40], 0, size)]
    elif fmt == 0x0102:
        g, size = rp[0x7C:0x8C], None
        n, at = struct.unpack_from('<HH', rp, 0x54)
        refs = []
        for i in range(n // 64):
            e = at + 8 + 64 * i
            refs.append((u32(rp, e), u32(rp, e + 4), u32(rp, e + 8), u32(rp, e + 0x18), rp[e + 0x20:e + 0x30],
                         u64(rp, e + 0x38), u64(rp, e + 0x30)))
    elif fmt == 0x0103:
        if rp[0x0C:0x10] != b'FeRp' or rp[0x8C:0x90] != b'RbRp' or rp[0x9C:0xA0] != b'DdRp':
            fail('%s: property bag without FeRp/RbRp/DdRp' % rel)
        dd = 0x9C
        if zlib.crc32(rp[dd + 8:dd + 0x6C]) != u32(rp, dd + 4) or zlib.crc32(rp[0x14:dd + 0x6C]) != u32(rp, 0x10):
            fail('%s: property bag CRC-32 mismatch' % rel)
        g, size = rp[0x6C:0x7C], u64(rp, 0x84)
        if u64(rp, dd + 0x64) != size:
            fail('%s: DdRp size differs from the bag size' % rel)
        refs = [(u32(rp, dd + 0x2C), u32(rp, dd + 0x30), u32(rp, dd + 0x3C), u32(rp, dd + 0x4C),
                 rp[dd + 0x54:dd + 0x64], 0, size)]
    else:
        fail('%s: format %#x' % (rel, fmt))
    if guid_text(g) != guid:
        fail('%s: GUID %s, store %s' % (rel, guid_text(g), guid))
    return fmt, refs, size


def check_file(store, guid, src, out, xattr, rel, used):
    sp, op = os.path.join(src, rel), os.path.join(out, rel)
    size = os.lstat(sp).st_size
    if os.lstat(op).st_size != size:
        fail('%s: size %d, source %d' % (rel, os.lstat(op).st_size, size))
    try:
        rp = os.getxattr(op, xattr, follow_symlinks=False)
    except OSError:
        rp = None
    if size == 0:
        if rp is not None:
            fail('%s: an empty file got a reparse point' % rel)
        stats['plain'] += 1
        return
    if rp is None:
        fail('%s: no %s' % (rel, xattr))
    fmt, refs, rsize = refs_of(rp, rel, guid)
    stats['files'] += 1
    stats['formats'][hex(fmt)] = stats['formats'].get(hex(fmt), 0) + 1
    stats['parts_max'] = max(stats['parts_max'], len(refs))
    want = open(sp, 'rb') if size <= 64 << 20 else None
    pos = 0
    for seq, cid, off, smap_size, dg, begin, end in refs:
        if begin != pos:
            fail('%s: part begins at %d, previous ended at %d' % (rel, begin, pos))
        r = find(store, 'Stream', cid, None, off, seq,
                 lambda r: r[1] == 2 and len(r[2]) == smap_size and r[3][0x38:0x48] == dg[:16])
        sm = r[2]
        if sm[:4] != b'Smap' or (len(sm) - 8) % 64:
            fail('%s: stream map malformed' % rel)
        for i in range((len(sm) - 8) // 64):
            e = 8 + 64 * i
            dseq, dcid, doff, dgen, dend = struct.unpack_from('<IIIIQ', sm, e)
            digest, stored = sm[e + 0x18:e + 0x38], u32(sm, e + 0x38)
            key = (dcid, dgen, doff)
            if key in used:
                stats['shared_refs'] += 1
            dr = find(store, 'Data', dcid, dgen, doff, dseq,
                      lambda r: r[1] == 1 and len(r[2]) == stored and r[3][0x28:0x48] == digest)
            comp = u32(dr[3], 0x20)
            if comp != u32(dr[3], 0x24) or comp not in (0, 2) or (comp == 0) != (stored == dend - pos):
                fail('%s: chunk %d: compression %d, stored %d of %d' % (rel, i, comp, stored, dend - pos))
            if comp == 2:
                stats['compressed'] += 1
            elif key not in used and hashlib.sha512(dr[2]).digest()[:32] != digest:
                fail('%s: chunk %d: digest is not SHA-512[:32] of the chunk' % (rel, i))
            used.add(key)
            if want and comp == 0 and want.read(dend - pos) != dr[2]:
                fail('%s: content differs in chunk %d' % (rel, i))
            pos = dend
        if pos != end:
            fail('%s: stream map ends at %d, part at %d' % (rel, pos, end))
    if pos != size or (rsize is not None and rsize != size):
        fail('%s: stream maps cover %d bytes of %d' % (rel, pos, size))
    if want:
        stats['content_checked'] += 1


def main():
    src, out, xattr = sys.argv[1:4]
    store, guid = load_store(out)
    used = set()
    for root, dirs, files in os.walk(src):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(root, f)
            if os.path.isfile(p) and not os.path.islink(p):
                check_file(store, guid, src, out, xattr, os.path.relpath(p, src), used)
    print(json.dumps(stats, sort_keys=True))


main()
