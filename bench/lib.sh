# shellcheck shell=bash disable=SC2034,SC2154
# bench/lib.sh — shared helpers for bench/backup.sh, bench/restore.sh and bench/mount.sh (source it;
# bash only): messages, package installs, cache dropping, waiting for a quiet machine, and the dataset
# generators, so that every benchmark measures the same ~1 GiB trees (make_corpus, make_system) and
# the same ~1 GiB single file (make_bigfile).
#
# Before sourcing, set BENCH_NAME (the script's name, for messages) and tmp (the scratch directory).

GiB=1073741824
MiB=1048576

die() { echo "${BENCH_NAME:-bench}: error: $*" >&2; exit 1; }
note() { echo "${BENCH_NAME:-bench}: $*" >&2; }

# need COMMAND DEBIAN-PACKAGE: install the package when the command is missing (one apt-get update at most)
updated=""
need() {
    command -v "$1" >/dev/null 2>&1 && return 0
    note "installing $2"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >"$tmp/apt.log" 2>&1; then
        if [ -z "$updated" ]; then
            apt-get update -qq >>"$tmp/apt.log" 2>&1 || { cat "$tmp/apt.log" >&2; die "apt-get update failed"; }
            updated=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >>"$tmp/apt.log" 2>&1 ||
            { cat "$tmp/apt.log" >&2; die "cannot install $2"; }
    fi
    command -v "$1" >/dev/null 2>&1 || die "$2 installed but $1 not found"
}

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# quiesce: wait (up to 10 s) until the CPUs have been at least 75 % idle for one second; count the
# measurements that had to start on a busy machine anyway.
busy_starts=0
quiesce() {
    local i a b idle total
    for i in $(seq 10); do
        a=$(awk '/^cpu /{print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat)
        sleep 1
        b=$(awk '/^cpu /{print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat)
        read -r idle total <<<"$(echo "$a $b" | awk '{print $3 - $1, $4 - $2}')"
        [ $((idle * 4)) -lt $((total * 3)) ] || return 0
    done
    busy_starts=$((busy_starts + 1))
    note "machine still busy after 10 s (other jobs?); measuring anyway"
}

# Bytes of file content, each inode once (hard links share one copy), and the number of paths.
file_bytes() { find "$1" -type f -printf '%i %s\n' | sort -u -k1,1n | awk '{s += $2} END {printf "%d\n", s}'; }
file_count() { find "$1" -type f | wc -l; }
hardlinked() { find "$1" -type f -links +1 | wc -l; }

# manifest DIR: one sorted line per entry below DIR — type, mode, size (files), mtime in seconds
# (files and symlinks), link target, relative path — followed by the SHA-256 of every regular file.
# Two trees with the same manifest have the same names, types, modes, sizes, mtimes and contents.
manifest() {
    (
        cd "$1" || exit 1
        find . -mindepth 1 -printf '%y %m %s %T@ %l\t%P\n' | LC_ALL=C awk -F'\t' '{
            split($1, f, " ")
            if (f[1] == "d") $1 = "d " f[2]                     # directory sizes and mtimes vary
            else $1 = f[1] " " f[2] " " (f[1] == "f" ? f[3] : "-") " " int(f[4]) " " f[5]
            print $1 "\t" $2 }' | LC_ALL=C sort
        find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum
    )
}

# --- dataset 1: generated corpus ----------------------------------------------------------------------

make_corpus() {
    python3 - "$1" <<'EOF'
# Deterministic (fixed seeds; Python's random is stable across 3.x for these calls) ~1 GiB tree.
import math, os, random, sys

root = sys.argv[1]
KiB, MiB = 1 << 10, 1 << 20
R = random.Random(20240601)
MTIME = 1700000000

# Text comes from pools of lines (prose and log) picked at random: lines are ~60 bytes, far below any
# tool's chunk size, so picking them yields no chunk-level duplication, while zstd finds the word-level
# redundancy of text (about 3:1).
letters = "etaoinshrdlcumwfgypbvkjxqz"
vocab = ["".join(R.choices(letters, weights=range(26, 0, -1), k=R.randint(2, 10))) for _ in range(4096)]
cum, acc = [], 0.0
for i in range(len(vocab)):         # Zipf-distributed word frequencies
    acc += 1.0 / (i + 1)
    cum.append(acc)
def line(lo, hi):
    return " ".join(R.choices(vocab, cum_weights=cum, k=R.randint(lo, hi)))
prose = [(line(4, 16) + "\n").encode() for _ in range(65536)]
levels = ["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"]
logmsg = [f"{R.choice(levels)} [{R.choice(vocab)}.{R.choice(vocab)}] {line(3, 10)}\n".encode()
          for _ in range(32768)]

def text(rng, n):
    out = b"".join(rng.choices(prose, k=n // 50 + 1))
    return out[:n]

def log(rng, n):
    parts, t, size = [], rng.randrange(10**9), 0
    while size < n:
        t += rng.randrange(1, 4000)
        p = b"2024-%02d-%02dT%02d:%02d:%02d.%03dZ " % (1 + t // 2592000000 % 12, 1 + t // 86400000 % 28,
             t // 3600000 % 24, t // 60000 % 60, t // 1000 % 60, t % 1000) + rng.choice(logmsg)
        parts.append(p); size += len(p)
    return b"".join(parts)[:n]

NIBBLES = bytes((b % 16) * 17 for b in range(256))  # maps every byte onto a 16-symbol alphabet
def binary(rng, n):                                  # semi-compressible: 4 bits of entropy a byte, ~2:1
    return rng.randbytes(n).translate(NIBBLES)

def loguniform(rng, lo, hi):
    return int(math.exp(rng.uniform(math.log(lo), math.log(hi))))

stats = {}
def put(path, data, kind):
    full = os.path.join(root, path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "wb") as f:
        f.write(data)
    os.utime(full, (MTIME, MTIME))
    n, b = stats.get(kind, (0, 0))
    stats[kind] = (n + 1, b + len(data))
    return path

small, medium = [], []
# 1. 16,000 small text files, 256 B - 32 KiB (log-uniform), 70 % prose, 30 % logs, 400 directories
for i in range(16000):
    rng = random.Random(1_000_000 + i)
    n = loguniform(rng, 256, 32 * KiB)
    kind = "small-prose" if rng.random() < 0.7 else "small-log"
    data = text(rng, n) if kind == "small-prose" else log(rng, n)
    small.append(put(f"docs/d{i % 20:02d}/s{i // 20 % 20:02d}/f{i:05d}.txt", data, kind))
# 2. 1,500 medium files, 32 KiB - 1 MiB (log-uniform): 35 % prose, 25 % logs, 40 % semi-compressible binary
for i in range(1500):
    rng = random.Random(2_000_000 + i)
    n = loguniform(rng, 32 * KiB, 1 * MiB)
    u = rng.random()
    if u < 0.35:   kind, data, ext = "medium-prose", text(rng, n), "txt"
    elif u < 0.60: kind, data, ext = "medium-log", log(rng, n), "log"
    else:          kind, data, ext = "medium-binary", binary(rng, n), "bin"
    medium.append(put(f"data/d{i % 30:02d}/m{i:04d}.{ext}", data, kind))
# 3. 8 large random (incompressible) files of 32 MiB
large = []
for i in range(8):
    rng = random.Random(3_000_000 + i)
    large.append(put(f"blobs/large{i}.img", rng.randbytes(32 * MiB), "large-random"))
# 4. 500 exact duplicates (300 small, 200 medium files) under other names
rng = random.Random(4_000_000)
for j, p in enumerate(rng.sample(small, 300) + rng.sample(medium, 200)):
    with open(os.path.join(root, p), "rb") as f:
        put(f"copies/c{j % 10}/{j:03d}-{os.path.basename(p)}", f.read(), "duplicate-file")
# 5. 4 files with duplicated regions: 32 MiB of a large file, cut in three pieces shifted by small
#    insertions (so duplicates sit at unaligned offsets), plus 8 MiB new random data and 4 MiB zeros
for i in range(4):
    rng = random.Random(5_000_000 + i)
    with open(os.path.join(root, large[i]), "rb") as f:
        base = f.read()
    a, b = rng.randrange(4 * MiB, 12 * MiB), rng.randrange(16 * MiB, 28 * MiB)
    data = (base[:a] + rng.randbytes(rng.randrange(1, 4096)) + base[a:b] + rng.randbytes(8 * MiB)
            + bytes(4 * MiB) + rng.randbytes(rng.randrange(1, 4096)) + base[b:])
    put(f"blobs/variant{i}.img", data, "dup-region-file")

with open(os.path.join(os.path.dirname(root), "corpus.manifest"), "w") as f:
    for kind, (n, b) in stats.items():
        f.write(f"| {kind} | {n} | {b / MiB:.1f} |\n")
EOF
}

# --- dataset 2: a copy of this machine's files --------------------------------------------------------

# Whole /usr/include, /usr/lib/gcc and /usr/share/doc, then whole top-level entries of
# /usr/lib/x86_64-linux-gnu in C-locale name order until the total reaches 1 GiB.
make_system() {
    local dst=$1 total=0 sz name last="" n=0
    mkdir -p "$dst/usr/lib/x86_64-linux-gnu" "$dst/usr/share"
    for d in /usr/include /usr/lib/gcc /usr/share/doc; do
        [ -d "$d" ] || die "$d is missing"
        cp -a "$d" "$dst$(dirname "$d")/"
    done
    total=$(du -scb /usr/include /usr/lib/gcc /usr/share/doc | tail -1 | cut -f1)
    while IFS=$'\t' read -r sz name; do
        [ "$total" -lt "$GiB" ] || break
        cp -a "$name" "$dst/usr/lib/x86_64-linux-gnu/"
        total=$((total + sz)) last=$(basename "$name") n=$((n + 1))
    done < <(cd /usr/lib/x86_64-linux-gnu && LC_ALL=C ls -A | LC_ALL=C sed 's|^|/usr/lib/x86_64-linux-gnu/|' |
             tr '\n' '\0' | xargs -0 du -sb --)
    system_desc="/usr/include, /usr/lib/gcc, /usr/share/doc (whole) + the first $n entries of /usr/lib/x86_64-linux-gnu in C-locale order (through \`$last\`)"
}

# --- dataset 3: one ~1 GiB file -------------------------------------------------------------------------

# make_bigfile DIR: DIR/big.bin, 1 GiB + 4097 bytes, deterministic (fixed seeds):
#   576 MiB random (incompressible) | 128 MiB semi-compressible binary (16-symbol alphabet, zstd ~2:1)
#   | 64 MiB text (Zipf words, zstd ~3:1) | 4097 random bytes | 256 MiB copy of the random part from
#   offset 100 MiB + 123 (a duplicated region at an unaligned offset, deduplicable by every tool).
make_bigfile() {
    mkdir -p "$1"
    python3 - "$1/big.bin" <<'EOF'
import os, random, sys
MiB = 1 << 20
R = random.Random(20240602)
letters = "etaoinshrdlcumwfgypbvkjxqz"
vocab = ["".join(R.choices(letters, weights=range(26, 0, -1), k=R.randint(2, 10))) for _ in range(4096)]
cum, acc = [], 0.0
for i in range(len(vocab)):
    acc += 1.0 / (i + 1)
    cum.append(acc)
prose = [(" ".join(R.choices(vocab, cum_weights=cum, k=R.randint(4, 16))) + "\n").encode() for _ in range(65536)]
NIBBLES = bytes((b % 16) * 17 for b in range(256))
with open(sys.argv[1], "wb") as f:
    rnd = b"".join(R.randbytes(64 * MiB) for _ in range(9))   # randbytes takes < 2**31 bits at a time
    f.write(rnd)
    f.write(b"".join(R.randbytes(64 * MiB).translate(NIBBLES) for _ in range(2)))
    f.write(b"".join(R.choices(prose, k=64 * MiB // 40))[:64 * MiB])
    f.write(R.randbytes(4097))
    f.write(rnd[100 * MiB + 123:356 * MiB + 123])
os.utime(sys.argv[1], (1700000000, 1700000000))
EOF
}

# --- dataset 4: the system tree as one file ---------------------------------------------------------------

# make_systar SYSTEM DIR: DIR/big.bin, a tar of the tree SYSTEM (make_system), deterministic (names sorted,
# one mtime and owner), so the same real, compressible ~1.1 GiB as a single file.
make_systar() {
    mkdir -p "$2"
    tar -C "$1" --sort=name --mtime=@1700000000 --owner=0 --group=0 --numeric-owner -cf "$2/big.bin" . ||
        die "cannot tar $1"
    touch -d @1700000000 "$2/big.bin"
}

# make_datasets DIR DATASET...: generate each dataset (corpus, single, system, systar) into DIR/DATASET, or
# reuse one that an earlier run finished there (BENCH_DATA).
make_datasets() {
    local dir=$1 ds
    shift
    for ds in "$@"; do
        if [ -f "$dir/$ds.done" ]; then
            note "reusing $dir/$ds"
            continue
        fi
        rm -rf "${dir:?}/$ds"
        note "generating $ds"
        case $ds in
            corpus) make_corpus "$dir/corpus" ;;
            single) make_bigfile "$dir/single" ;;
            system) make_system "$dir/system" ;;
            systar) [ -f "$dir/system.done" ] || die "systar is made from the system dataset: generate it first"
                    make_systar "$dir/system" "$dir/systar" ;;
        esac
        touch "$dir/$ds.done"
    done
}

# publish_report FILE: print the markdown report, and copy it to $BENCH_OUT when that is set.
publish_report() {
    cat "$1"
    if [ -n "${BENCH_OUT:-}" ]; then
        cp "$1" "$BENCH_OUT" || die "cannot write $BENCH_OUT"
        note "results written to $BENCH_OUT"
    fi
}
