/*
 * berth-helper fsops ROOT — file operations Node.js cannot do (mknod, mkfifo,
 * lsetxattr), used by the agent while unpacking image layers.
 *
 * Protocol (one helper process serves a whole layer):
 *   stdin:  a sequence of operations; every field is terminated by a NUL byte.
 *             mknod  PATH MODE MAJOR MINOR   (MODE: octal, includes S_IFCHR/S_IFBLK)
 *             mkfifo PATH MODE               (MODE: octal permission bits)
 *             lsetxattr PATH NAME HEXVALUE
 *   stdout: one line per operation, in order: "ok" or "err <errno> <text>".
 *
 * PATH is relative to ROOT. It is resolved with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS) for its parent directory and the
 * final component is never followed, so no operation can leave ROOT or act
 * through a symlink. Exits 0 at end of input, 2 on a usage or protocol error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "helper.h"

#define FIELD_MAX 8192

static int root_fd = -1;

/* Reads one NUL-terminated field into buf. Returns 1 on success, 0 at clean EOF, -1 on error. */
static int read_field(char *buf, size_t cap, int first) {
  size_t n = 0;
  for (;;) {
    int c = getchar();
    if (c == EOF) {
      if (first && n == 0) return 0;
      return -1;
    }
    if (c == 0) {
      buf[n] = 0;
      return 1;
    }
    if (n + 1 >= cap) return -1;
    buf[n++] = (char)c;
  }
}

static void reply_err(int err, const char *what) {
  printf("err %d %s: %s\n", err, what, strerror(err));
  fflush(stdout);
}

static void reply_ok(void) {
  fputs("ok\n", stdout);
  fflush(stdout);
}

/* Opens the parent directory of path beneath root; *name points at the last component. */
static int open_parent(char *path, const char **name) {
  size_t len = strlen(path);
  if (len == 0 || path[0] == '/') {
    errno = EINVAL;
    return -1;
  }
  while (len > 1 && path[len - 1] == '/') path[--len] = 0;
  struct open_how how;
  memset(&how, 0, sizeof how);
  how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  if (strcmp(path, ".") == 0) {
    /* The root itself (e.g. an opaque layer root): "." relative to the root. */
    *name = ".";
    return (int)syscall(SYS_openat2, root_fd, ".", &how, sizeof how);
  }
  char *slash = strrchr(path, '/');
  const char *last = slash ? slash + 1 : path;
  if (strcmp(last, ".") == 0 || strcmp(last, "..") == 0 || *last == 0) {
    errno = EINVAL;
    return -1;
  }
  *name = last;
  if (!slash) return (int)syscall(SYS_openat2, root_fd, ".", &how, sizeof how);
  *slash = 0;
  int fd = (int)syscall(SYS_openat2, root_fd, path, &how, sizeof how);
  *slash = '/';
  return fd;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static int parse_ulong(const char *s, int base, unsigned long *out) {
  char *end = NULL;
  errno = 0;
  unsigned long v = strtoul(s, &end, base);
  if (errno != 0 || end == s || *end != 0) return -1;
  *out = v;
  return 0;
}

static void do_mknod(char *path, const char *mode_s, const char *major_s, const char *minor_s) {
  unsigned long mode, major, minor;
  if (parse_ulong(mode_s, 8, &mode) || parse_ulong(major_s, 10, &major) || parse_ulong(minor_s, 10, &minor)) {
    reply_err(EINVAL, "mknod arguments");
    return;
  }
  if (!S_ISCHR(mode) && !S_ISBLK(mode)) {
    reply_err(EINVAL, "mknod type (expected a character or block device)");
    return;
  }
  const char *name;
  int dir = open_parent(path, &name);
  if (dir < 0) {
    reply_err(errno, "open parent");
    return;
  }
  /* mknodat needs a real directory fd; O_PATH fds are fine for *at calls. */
  if (mknodat(dir, name, (mode_t)mode, makedev(major, minor)) != 0) reply_err(errno, "mknod");
  else reply_ok();
  close(dir);
}

static void do_mkfifo(char *path, const char *mode_s) {
  unsigned long mode;
  if (parse_ulong(mode_s, 8, &mode) || mode > 07777) {
    reply_err(EINVAL, "mkfifo mode");
    return;
  }
  const char *name;
  int dir = open_parent(path, &name);
  if (dir < 0) {
    reply_err(errno, "open parent");
    return;
  }
  if (mkfifoat(dir, name, (mode_t)mode) != 0) reply_err(errno, "mkfifo");
  else reply_ok();
  close(dir);
}

static void do_lsetxattr(char *path, const char *name_attr, const char *hex) {
  size_t hl = strlen(hex);
  if (hl % 2 != 0) {
    reply_err(EINVAL, "xattr value (expected hex)");
    return;
  }
  unsigned char *value = malloc(hl / 2 + 1);
  if (!value) {
    reply_err(ENOMEM, "xattr value");
    return;
  }
  for (size_t i = 0; i < hl / 2; i++) {
    int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      free(value);
      reply_err(EINVAL, "xattr value (expected hex)");
      return;
    }
    value[i] = (unsigned char)(hi * 16 + lo);
  }
  const char *name;
  int dir = open_parent(path, &name);
  if (dir < 0) {
    free(value);
    reply_err(errno, "open parent");
    return;
  }
  /* Act on name relative to the verified parent without following a final symlink. */
  if (fchdir(dir) != 0) {
    reply_err(errno, "fchdir");
  } else if (lsetxattr(name, name_attr, value, hl / 2, 0) != 0) {
    reply_err(errno, "lsetxattr");
  } else {
    reply_ok();
  }
  free(value);
  close(dir);
}

int berth_fsops_main(int argc, char **argv) {
  /* ROOT is the last argument, whether or not the dispatcher kept "fsops" in argv. */
  if (argc < 2) {
    fprintf(stderr, "usage: berth-helper fsops ROOT < operations\n");
    return 2;
  }
  root_fd = open(argv[argc - 1], O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root_fd < 0) {
    fprintf(stderr, "fsops: cannot open root %s: %s\n", argv[argc - 1], strerror(errno));
    return 2;
  }
  static char op[64], a[FIELD_MAX], b[FIELD_MAX], c[FIELD_MAX * 2 + 8], d[64];
  for (;;) {
    int r = read_field(op, sizeof op, 1);
    if (r == 0) return 0;
    if (r < 0) goto protocol;
    if (strcmp(op, "mknod") == 0) {
      if (read_field(a, sizeof a, 0) != 1 || read_field(b, sizeof b, 0) != 1 || read_field(c, sizeof c, 0) != 1 ||
          read_field(d, sizeof d, 0) != 1)
        goto protocol;
      do_mknod(a, b, c, d);
    } else if (strcmp(op, "mkfifo") == 0) {
      if (read_field(a, sizeof a, 0) != 1 || read_field(b, sizeof b, 0) != 1) goto protocol;
      do_mkfifo(a, b);
    } else if (strcmp(op, "lsetxattr") == 0) {
      if (read_field(a, sizeof a, 0) != 1 || read_field(b, sizeof b, 0) != 1 || read_field(c, sizeof c, 0) != 1)
        goto protocol;
      do_lsetxattr(a, b, c);
    } else {
      goto protocol;
    }
  }
protocol:
  fprintf(stderr, "fsops: malformed operation on stdin\n");
  return 2;
}

#ifdef BERTH_FSOPS_STANDALONE
int main(int argc, char **argv) { return berth_fsops_main(argc - 1, argv + 1); }
#endif
