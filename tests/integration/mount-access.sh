#!/usr/bin/env bash
# Who may read a mounted backup: the daemon always enforces the backed-up owners and modes
# (default_permissions), also under -o allow_other, through every way of mounting. Checked as
# unprivileged users (setpriv), not as root: the owner reads their 0600 file, another user gets EACCES,
# nobody enters a 0700 directory they do not own, group bits count.
. "$(dirname "$0")/../lib.sh"

[ -e /dev/fuse ] && command -v fusermount3 >/dev/null || { echo "# no /dev/fuse or fusermount3"; exit 77; }
[ "$(id -u)" = 0 ] || { echo "# needs root to make files of other owners and to switch users"; exit 77; }
rh() { "$REHYDRATE" "$@"; }
chmod 755 "$WORK" # the other users must reach the mount point
MNT=$WORK/mnt
mkdir -p "$MNT"
unmount_all() { mountpoint -q "$MNT" && fusermount3 -u -z "$MNT"; return 0; }
cleanup_hooks="unmount_all"

# as UID GID COMMAND...: runs COMMAND as that user and group, with no supplementary groups.
as() { local u=$1 g=$2; shift 2; setpriv --reuid="$u" --regid="$g" --clear-groups "$@" >/dev/null; }
# denied UID GID COMMAND...: passes when COMMAND fails as that user with "Permission denied".
denied() { local out; ! out=$(as "$@" 2>&1) && grep -q 'Permission denied' <<<"$out"; }

SRC=$WORK/src
mkdir -p "$SRC/alice/inner" "$SRC/open"
echo "alice's secret" >"$SRC/alice/secret"
echo "deeper" >"$SRC/alice/inner/deep"
echo "private" >"$SRC/private.txt"
echo "public" >"$SRC/public.txt"
echo "for the group" >"$SRC/group.txt"
echo "in an open dir" >"$SRC/open/file"
setfattr -n user.note -v "private note" "$SRC/private.txt"
chown -R 1000:1000 "$SRC/alice" "$SRC/private.txt" "$SRC/public.txt" "$SRC/open"
chown 1001:2000 "$SRC/group.txt"
chmod 0700 "$SRC/alice"
chmod 0600 "$SRC/alice/secret" "$SRC/private.txt"
chmod 0644 "$SRC/public.txt"
chmod 0640 "$SRC/group.txt"
chmod 0755 "$SRC/open"
STORE=$WORK/store
rh backup "$STORE" "$SRC" --name snap -q

# check_modes WHERE: the assertions for a mount of the store at $MNT whose snapshot is at WHERE.
check_modes() {
    local s=$1 how=$2
    check "$how: another user reads a 0644 file (allow_other is in effect)" as 65534 65534 cat "$s/public.txt"
    check "$how: the owner reads their 0600 file" as 1000 1000 cat "$s/private.txt"
    check "$how: another user gets EACCES on it" denied 65534 65534 cat "$s/private.txt"
    check "$how: ... and on its xattrs" denied 65534 65534 getfattr -n user.note "$s/private.txt"
    check "$how: the owner enters their 0700 directory" as 1000 1000 cat "$s/alice/secret"
    check "$how: another user cannot list it" denied 65534 65534 ls "$s/alice"
    check "$how: ... nor read a file in it" denied 65534 65534 cat "$s/alice/secret"
    check "$how: ... nor stat a file below it" denied 1001 2000 stat "$s/alice/inner/deep"
    check "$how: a member of the file's group reads a 0640 file" as 1002 2000 cat "$s/group.txt"
    check "$how: a user of another group gets EACCES" denied 1002 1002 cat "$s/group.txt"
    check "$how: root still reads everything" bash -c 'cat "$@" >/dev/null' _ "$s/alice/secret" "$s/private.txt" "$s/group.txt"
}

"$REHYDRATEFS" "$STORE" "$MNT" -o allow_other
check_modes "$MNT/snap" "rehydratefs -o allow_other"
fusermount3 -u "$MNT"

"$REHYDRATEFS" "$STORE" "$MNT" -o allow_other,snapshot=snap
check_modes "$MNT" "-o allow_other,snapshot=snap"
fusermount3 -u "$MNT"

# The fstab line of rehydratefs(8) and contrib/mount.rehydratefs, as mount(8) runs it.
PATH="$(dirname "$REHYDRATEFS"):$PATH" "$TOP_SRCDIR/contrib/mount.rehydratefs" "$STORE" "$MNT" -o ro,noauto,allow_other
check_modes "$MNT/snap" "mount.rehydratefs -o ro,noauto,allow_other"
fusermount3 -u "$MNT"

finish
