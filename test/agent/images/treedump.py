# Dumps a directory tree as JSON for comparing two unpacked root filesystems:
# type, mode, owner, size, content hash, link target, device, hardlink group,
# mtime (non-directories) and xattrs (minus overlayfs' own and SELinux labels).
import hashlib, json, os, stat, sys

root = sys.argv[1]
out = {}
first_by_ino = {}
entries = []
for dirpath, dirnames, filenames in os.walk(root):
    dirnames.sort()
    for name in sorted(dirnames + filenames):
        full = os.path.join(dirpath, name)
        entries.append(full)
for full in sorted(entries):
    rel = '/' + os.path.relpath(full, root)
    st = os.lstat(full)
    kind = {stat.S_IFREG: 'file', stat.S_IFDIR: 'dir', stat.S_IFLNK: 'symlink', stat.S_IFCHR: 'char', stat.S_IFBLK: 'block', stat.S_IFIFO: 'fifo', stat.S_IFSOCK: 'socket'}[stat.S_IFMT(st.st_mode)]
    e = {'type': kind, 'mode': oct(stat.S_IMODE(st.st_mode)), 'uid': st.st_uid, 'gid': st.st_gid}
    if kind == 'file':
        with open(full, 'rb') as f:
            e['sha256'] = hashlib.sha256(f.read()).hexdigest()
        e['size'] = st.st_size
        if st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            e['linkgroup'] = first_by_ino.setdefault(key, rel)
    if kind == 'symlink':
        e['target'] = os.readlink(full)
    if kind in ('char', 'block'):
        e['rdev'] = [os.major(st.st_rdev), os.minor(st.st_rdev)]
    if kind != 'dir':
        e['mtime'] = int(st.st_mtime)
    try:
        names = sorted(n for n in os.listxattr(full, follow_symlinks=False) if not n.startswith('trusted.overlay.') and n != 'security.selinux')
        if names:
            e['xattrs'] = {n: os.getxattr(full, n, follow_symlinks=False).hex() for n in names}
    except OSError:
        pass
    out[rel] = e
json.dump(out, sys.stdout, indent=1, sort_keys=True)
