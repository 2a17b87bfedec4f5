/*
 * berth-helper: the one native program of Berth's container runtime.
 *
 * Everything that decides *what* a container is (parsing config.json,
 * validating it, cgroup limits, state, logs) is TypeScript (agent/runtime,
 * agent/sys). This program only does the kernel-facing steps that Node
 * cannot do: clone into new namespaces, mount, pivot_root, drop
 * capabilities, exec. It reads no JSON.
 *
 * ROLES (argv[1])
 *   shim     detached per-container supervisor (think conmon). Prints one
 *            line on stdout, "ok <init-pid> <shim-pid> <init-starttime>" or
 *            "error <message>",
 *            and exits; the shim lives on in its own session.
 *   run      the same supervisor in the foreground: the container shares the
 *            caller's stdio, signals are forwarded, and the helper exits with
 *            the container's status (code, or 128+signal). For `berth-runtime run`.
 *            With a terminal, the caller's tty is put in raw mode and relayed,
 *            and its window size follows SIGWINCH.
 *   exec     join a running container (setns + cgroup) and exec a process;
 *            see exec_main().
 *   spawner  long-lived: reads "<length>\n<spec>" requests on stdin and does
 *            the shim role for each in a forked child; also overlay mount and
 *            unmount requests; see spawner_main().
 *   fsops    filesystem operations for image unpacking (fsops.c, helper.h).
 *   version  prints the protocol version.
 *
 * PROCESSES AND STAGES (shim role)
 *   caller (Node) --spawn--> P  [reads the spec from fd 3]
 *   P --fork--> S1 --setsid, fork--> S (the shim; S1 exits at once, so S is
 *   not a session leader and is re-parented away from P and the agent).
 *   S --clone(CLONE_NEWPID|NEWNS|NEWUTS|NEWIPC[|NEWNET])--> C (pid 1 inside).
 *   C ("container init") runs init_main(): joins the cgroups, unshares the
 *   cgroup namespace, prepares the root filesystem, pivots, masks paths, sets
 *   rlimits, user, capabilities and no_new_privs, then reports READY and waits
 *   for START; on START it closes every fd above 2, installs the seccomp
 *   filter (if asked) and execve()s the process.
 *
 * HANDSHAKE S <-> C (socketpair AF_UNIX SOCK_SEQPACKET, one struct msg each)
 *   C -> S  MSG_READY   setup done, the process is about to be exec'd on START
 *   C -> S  MSG_ERROR   setup failed; text says which stage and why; C exits 1
 *   C -> S  MSG_PTY     (terminal only, before READY) the pty master, as SCM_RIGHTS
 *   S -> C  MSG_START   exec now
 *   C's end is close-on-exec: S seeing end-of-file after START (without an
 *   error) means execve succeeded.
 *
 * FILES IN THE STATE DIRECTORY (written by S, read by agent/runtime)
 *   init.pid    "<pid> <starttime>\n": host pid of C and field 22 of
 *               /proc/<pid>/stat, so a reused pid is never signalled.
 *   shim.pid    "<pid>\n"
 *   control     a FIFO S reads commands from: "start\n", "resize ROWS COLS\n".
 *   attach      (terminal only) a unix stream socket: what a client sends goes
 *               to the pty, what the container prints goes to every client (a
 *               client that cannot keep up is dropped); closed at exit.
 *   stdin       (no terminal, spec "stdin") a unix stream socket for the
 *               container's stdin (a pipe): one client at a time; what it
 *               sends is written to the pipe, and when it disconnects the
 *               pipe is closed (the container reads end of file) and the
 *               socket removed: stdin is attached once, as docker run -i does.
 *   started     written when execve succeeded: "<RFC 3339 time>\n".
 *   exit.json   {"exitCode":N,"signal":N,"oomKilled":B,"finishedAt":"...","error":"..."}
 *   shim.log    S's own diagnostics (stderr).
 *   All but control are written to a temporary name and renamed.
 *
 * CONTAINER LOG FORMAT (shim role, stdout/stderr of the container)
 *   One record per line, the CRI logging format:
 *     <RFC 3339 UTC time with nanoseconds> <stdout|stderr> <F|P> <content>\n
 *   F = the content ends a line (its newline is not stored), P = partial
 *   (a line longer than 16 KiB is cut into P records ended by an F record).
 *   A last line without newline at end of stream is stored as F. With a
 *   terminal everything is "stdout" and a "\r" before the newline is dropped.
 *   The shim rotates: when the file would exceed max bytes it is renamed to
 *   <log>.1 (.1 to .2, ...), keeping <files> files in all.
 *
 * SPEC FORMAT (fd 3, written by agent/sys/linux.ts from a validated config)
 *   A sequence of NUL-terminated strings. The first is "berth-spec-1". Then
 *   records: a keyword followed by a fixed number of arguments:
 *     state DIR | rootfs PATH | rootfs-readonly | hostname NAME | cwd PATH
 *     user UID GID | group GID | arg S | env S | no-new-privileges | terminal
 *     winsize ROWS COLS | seccomp default
 *     caps BOUNDING EFFECTIVE PERMITTED INHERITABLE AMBIENT   (hex masks)
 *     rlimit NAME SOFT HARD        (NAME like RLIMIT_NOFILE; decimal)
 *     mount DEST TYPE SOURCE FLAGS DATA   (FLAGS: decimal MS_* bits)
 *     mask PATH | readonly PATH | cgroup PROCS-FILE | oom EVENTS-FILE
 *     ns TYPE PATH   (TYPE net|ipc|uts: join PATH; "" = a new one)
 *     log PATH MAX-BYTES FILES | autostart | target PID (exec) | stdin | end
 *   Paths inside the container are absolute; host paths are absolute.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <linux/capability.h>
#include <linux/audit.h>
#include <linux/close_range.h>
#include <linux/filter.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <termios.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helper.h"

#define SPEC_MAGIC "berth-spec-1"
#define SPEC_MAX (1 << 20)
#define MAX_ITEMS 1024

/* ---------- the spec ---------- */

struct mount_entry {
	const char *dest, *type, *source, *data;
	unsigned long flags;
};

struct rlimit_entry {
	const char *name;
	int resource;
	rlim_t soft, hard;
};

struct ns_entry {
	int type; /* CLONE_NEW* */
	const char *path; /* NULL or "" = new namespace */
};

struct spec {
	const char *state_dir, *rootfs, *hostname, *cwd, *log_path, *oom_file;
	pid_t target; /* exec: host pid of the container's init */
	int rootfs_readonly, no_new_privs, terminal, autostart, seccomp, open_stdin;
	unsigned short rows, cols;
	long long log_max;
	int log_files;
	uid_t uid;
	gid_t gid;
	gid_t groups[64];
	int ngroups;
	uint64_t cap_bnd, cap_eff, cap_prm, cap_inh, cap_amb;
	int have_caps;
	char *args[MAX_ITEMS + 1];
	int nargs;
	char *env[MAX_ITEMS + 1];
	int nenv;
	struct mount_entry mounts[128];
	int nmounts;
	const char *masked[64];
	int nmasked;
	const char *readonly[64];
	int nreadonly;
	struct rlimit_entry rlimits[16];
	int nrlimits;
	const char *cgroups[16];
	int ncgroups;
	struct ns_entry ns[8];
	int nns;
};

static struct spec spec;

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("berth-helper: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static const struct {
	const char *name;
	int resource;
} rlimit_names[] = {
	{ "RLIMIT_CPU", RLIMIT_CPU }, { "RLIMIT_FSIZE", RLIMIT_FSIZE }, { "RLIMIT_DATA", RLIMIT_DATA },
	{ "RLIMIT_STACK", RLIMIT_STACK }, { "RLIMIT_CORE", RLIMIT_CORE }, { "RLIMIT_RSS", RLIMIT_RSS },
	{ "RLIMIT_NPROC", RLIMIT_NPROC }, { "RLIMIT_NOFILE", RLIMIT_NOFILE }, { "RLIMIT_MEMLOCK", RLIMIT_MEMLOCK },
	{ "RLIMIT_AS", RLIMIT_AS }, { "RLIMIT_LOCKS", RLIMIT_LOCKS }, { "RLIMIT_SIGPENDING", RLIMIT_SIGPENDING },
	{ "RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE }, { "RLIMIT_NICE", RLIMIT_NICE }, { "RLIMIT_RTPRIO", RLIMIT_RTPRIO },
	{ "RLIMIT_RTTIME", RLIMIT_RTTIME },
};

static unsigned long long parse_num(const char *s, int base, const char *what)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, base);
	if (errno || end == s || *end)
		die("spec: %s: expected a number, got \"%s\"", what, s);
	return v;
}

static void parse_spec(char *buf, size_t len);

/* Reads the whole spec from fd into a buffer that lives as long as the process. */
static void read_spec(int fd)
{
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);
	if (!buf)
		die("out of memory");
	for (;;) {
		if (len == cap) {
			if (cap >= SPEC_MAX)
				die("spec: larger than %d bytes", SPEC_MAX);
			cap *= 2;
			buf = realloc(buf, cap);
			if (!buf)
				die("out of memory");
		}
		ssize_t n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("spec: read fd %d: %s", fd, strerror(errno));
		if (n == 0)
			break;
		len += (size_t)n;
	}
	parse_spec(buf, len);
}

/* Parses a spec held in memory; the buffer must outlive the spec. */
static void parse_spec(char *buf, size_t len)
{
	if (len == 0 || buf[len - 1] != '\0')
		die("spec: empty or not NUL-terminated (is fd 3 the spec?)");

	char *p = buf, *end = buf + len;
#define NEXT(what) ({ if (p >= end) die("spec: missing %s", what); char *s_ = p; p += strlen(p) + 1; s_; })
	if (strcmp(NEXT("magic"), SPEC_MAGIC) != 0)
		die("spec: expected \"%s\" first", SPEC_MAGIC);
	spec.log_files = 1;
	int ended = 0;
	while (p < end && !ended) {
		char *k = NEXT("keyword");
		if (!strcmp(k, "state")) spec.state_dir = NEXT("state dir");
		else if (!strcmp(k, "rootfs")) spec.rootfs = NEXT("rootfs");
		else if (!strcmp(k, "rootfs-readonly")) spec.rootfs_readonly = 1;
		else if (!strcmp(k, "hostname")) spec.hostname = NEXT("hostname");
		else if (!strcmp(k, "cwd")) spec.cwd = NEXT("cwd");
		else if (!strcmp(k, "user")) {
			spec.uid = (uid_t)parse_num(NEXT("uid"), 10, "uid");
			spec.gid = (gid_t)parse_num(NEXT("gid"), 10, "gid");
		} else if (!strcmp(k, "group")) {
			if (spec.ngroups == 64) die("spec: too many groups");
			spec.groups[spec.ngroups++] = (gid_t)parse_num(NEXT("group"), 10, "group");
		} else if (!strcmp(k, "arg")) {
			if (spec.nargs == MAX_ITEMS) die("spec: too many args");
			spec.args[spec.nargs++] = NEXT("arg");
		} else if (!strcmp(k, "env")) {
			if (spec.nenv == MAX_ITEMS) die("spec: too many env entries");
			spec.env[spec.nenv++] = NEXT("env");
		} else if (!strcmp(k, "no-new-privileges")) spec.no_new_privs = 1;
		else if (!strcmp(k, "terminal")) spec.terminal = 1;
		else if (!strcmp(k, "stdin")) spec.open_stdin = 1;
		else if (!strcmp(k, "seccomp")) {
			const char *profile = NEXT("seccomp profile");
			if (strcmp(profile, "default") != 0)
				die("spec: unknown seccomp profile \"%s\" (expected default)", profile);
			spec.seccomp = 1;
		}
		else if (!strcmp(k, "autostart")) spec.autostart = 1;
		else if (!strcmp(k, "target")) spec.target = (pid_t)parse_num(NEXT("target"), 10, "target");
		else if (!strcmp(k, "winsize")) {
			spec.rows = (unsigned short)parse_num(NEXT("rows"), 10, "rows");
			spec.cols = (unsigned short)parse_num(NEXT("cols"), 10, "cols");
		}
		else if (!strcmp(k, "caps")) {
			spec.have_caps = 1;
			spec.cap_bnd = parse_num(NEXT("caps"), 16, "caps");
			spec.cap_eff = parse_num(NEXT("caps"), 16, "caps");
			spec.cap_prm = parse_num(NEXT("caps"), 16, "caps");
			spec.cap_inh = parse_num(NEXT("caps"), 16, "caps");
			spec.cap_amb = parse_num(NEXT("caps"), 16, "caps");
		} else if (!strcmp(k, "rlimit")) {
			if (spec.nrlimits == 16) die("spec: too many rlimits");
			const char *name = NEXT("rlimit name");
			struct rlimit_entry *r = &spec.rlimits[spec.nrlimits++];
			r->name = name;
			r->resource = -1;
			for (size_t i = 0; i < sizeof rlimit_names / sizeof rlimit_names[0]; i++)
				if (!strcmp(rlimit_names[i].name, name))
					r->resource = rlimit_names[i].resource;
			if (r->resource < 0) die("spec: unknown rlimit \"%s\"", name);
			r->soft = parse_num(NEXT("rlimit soft"), 10, "rlimit soft");
			r->hard = parse_num(NEXT("rlimit hard"), 10, "rlimit hard");
		} else if (!strcmp(k, "mount")) {
			if (spec.nmounts == 128) die("spec: too many mounts");
			struct mount_entry *m = &spec.mounts[spec.nmounts++];
			m->dest = NEXT("mount dest");
			m->type = NEXT("mount type");
			m->source = NEXT("mount source");
			m->flags = parse_num(NEXT("mount flags"), 10, "mount flags");
			m->data = NEXT("mount data");
		} else if (!strcmp(k, "mask")) {
			if (spec.nmasked == 64) die("spec: too many masked paths");
			spec.masked[spec.nmasked++] = NEXT("mask");
		} else if (!strcmp(k, "readonly")) {
			if (spec.nreadonly == 64) die("spec: too many readonly paths");
			spec.readonly[spec.nreadonly++] = NEXT("readonly");
		} else if (!strcmp(k, "cgroup")) {
			if (spec.ncgroups == 16) die("spec: too many cgroups");
			spec.cgroups[spec.ncgroups++] = NEXT("cgroup");
		} else if (!strcmp(k, "oom")) spec.oom_file = NEXT("oom");
		else if (!strcmp(k, "ns")) {
			if (spec.nns == 8) die("spec: too many namespaces");
			const char *t = NEXT("ns type");
			struct ns_entry *n = &spec.ns[spec.nns++];
			if (!strcmp(t, "net")) n->type = CLONE_NEWNET;
			else if (!strcmp(t, "ipc")) n->type = CLONE_NEWIPC;
			else if (!strcmp(t, "uts")) n->type = CLONE_NEWUTS;
			else die("spec: namespace type \"%s\" cannot be joined (expected net, ipc or uts)", t);
			n->path = NEXT("ns path");
		} else if (!strcmp(k, "log")) {
			spec.log_path = NEXT("log path");
			spec.log_max = (long long)parse_num(NEXT("log max"), 10, "log max");
			spec.log_files = (int)parse_num(NEXT("log files"), 10, "log files");
			if (spec.log_files < 1 || spec.log_files > 100) die("spec: log files must be 1..100");
		} else if (!strcmp(k, "end")) ended = 1;
		else die("spec: unknown keyword \"%s\"", k);
	}
#undef NEXT
	if (!ended) die("spec: missing \"end\"");
	if (spec.nargs == 0)
		die("spec: at least one arg is required");
}

/* ---------- small utilities ---------- */

static void iso_time(char *out, size_t size)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(out, size, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, size - n, ".%09ldZ", ts.tv_nsec);
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Writes <state>/<name> atomically (temporary file, then rename). */
static int write_state_file(const char *name, const char *content)
{
	char tmp[PATH_MAX], path[PATH_MAX];
	snprintf(tmp, sizeof tmp, "%s/.%s.tmp", spec.state_dir, name);
	snprintf(path, sizeof path, "%s/%s", spec.state_dir, name);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	int rc = write_all(fd, content, strlen(content));
	close(fd);
	if (rc == 0)
		rc = rename(tmp, path);
	if (rc < 0)
		fprintf(stderr, "berth-helper: write %s: %s\n", path, strerror(errno));
	return rc;
}

/* Field 22 (starttime) of /proc/<pid>/stat, or 0. */
static unsigned long long proc_start_time(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	if (!p)
		return 0;
	p++; /* the space before field 3 (state) */
	for (int field = 3; field < 22 && p; field++)
		p = strchr(p + 1, ' '); /* the space before field + 1 */
	return p ? strtoull(p + 1, NULL, 10) : 0;
}

/* ---------- the S <-> C handshake ---------- */

enum msg_type { MSG_READY = 1, MSG_ERROR = 2, MSG_START = 3, MSG_PTY = 4 };

struct msg {
	uint32_t type;
	int32_t err;
	char text[480];
};

static int init_sock = -1; /* C's end, for fail() */

static void send_msg(int fd, uint32_t type, int err, const char *text)
{
	struct msg m = { .type = type, .err = err };
	if (text)
		snprintf(m.text, sizeof m.text, "%s", text);
	while (send(fd, &m, sizeof m, MSG_NOSIGNAL) < 0 && errno == EINTR)
		;
}

/* Sends a message carrying one fd (SCM_RIGHTS). */
static int send_fd(int sock, uint32_t type, int fd)
{
	struct msg m = { .type = type };
	struct iovec iov = { &m, sizeof m };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	memset(&u, 0, sizeof u);
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof fd);
	return sendmsg(sock, &mh, MSG_NOSIGNAL) < 0 ? -1 : 0;
}

/* Receives one message; *fd gets a passed fd or -1. */
static ssize_t recv_msg(int sock, struct msg *m, int *fd, int flags)
{
	struct iovec iov = { m, sizeof *m };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
	ssize_t n;
	*fd = -1;
	while ((n = recvmsg(sock, &mh, flags | MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
		;
	for (struct cmsghdr *c = n > 0 ? CMSG_FIRSTHDR(&mh) : NULL; c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
			memcpy(fd, CMSG_DATA(c), sizeof *fd);
	if (n > 0)
		m->text[sizeof m->text - 1] = 0;
	return n;
}

/* Reports a setup failure of container init to the shim and exits. */
static void fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
	int err = errno;
	char text[480];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	if (err && n >= 0 && (size_t)n < sizeof text)
		snprintf(text + n, sizeof text - (size_t)n, ": %s", strerror(err));
	send_msg(init_sock, MSG_ERROR, err, text);
	_exit(1);
}

/* ---------- resolving paths inside the root ---------- */

static int force_walk; /* BERTH_HELPER_NO_OPENAT2=1: use the component walk (tests) */

/*
 * Resolves `path` inside the root the way openat2(RESOLVE_IN_ROOT) does,
 * expanding symlinks itself so that "/" and ".." never leave the root, and
 * writes the result (relative to the root, no symlinks) to `out`. Components
 * after the first missing one are taken literally, so the result also names
 * where a missing path has to be created. With nosymlinks any symlink is an
 * error (ELOOP).
 */
static int canonical_in_root(int rootfd, const char *path, int nosymlinks, char *out, size_t size)
{
	char resolved[PATH_MAX] = "", rest[PATH_MAX], next[PATH_MAX];
	int links = 0, missing = 0;
	if (snprintf(rest, sizeof rest, "%s", path) >= (int)sizeof rest)
		return errno = ENAMETOOLONG, -1;
	char *p = rest;
	for (;;) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		char *e = strchrnul(p, '/');
		size_t len = (size_t)(e - p);
		char comp[NAME_MAX + 1];
		if (len > NAME_MAX)
			return errno = ENAMETOOLONG, -1;
		memcpy(comp, p, len);
		comp[len] = 0;
		p = e;
		if (!strcmp(comp, "."))
			continue;
		if (!strcmp(comp, "..")) {
			char *slash = strrchr(resolved, '/');
			if (slash)
				*slash = 0;
			else
				resolved[0] = 0;
			continue;
		}
		char cand[PATH_MAX];
		if (snprintf(cand, sizeof cand, "%s%s%s", resolved, resolved[0] ? "/" : "", comp) >= (int)sizeof cand)
			return errno = ENAMETOOLONG, -1;
		struct stat st;
		if (!missing && fstatat(rootfd, cand, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno != ENOENT)
				return -1;
			missing = 1;
		}
		if (!missing && S_ISLNK(st.st_mode)) {
			if (nosymlinks || ++links > 40)
				return errno = ELOOP, -1;
			char target[PATH_MAX];
			ssize_t n = readlinkat(rootfd, cand, target, sizeof target - 1);
			if (n < 0)
				return -1;
			target[n] = 0;
			if (snprintf(next, sizeof next, "%s/%s", target, p) >= (int)sizeof next)
				return errno = ENAMETOOLONG, -1;
			memcpy(rest, next, sizeof rest);
			p = rest;
			if (target[0] == '/')
				resolved[0] = 0;
			continue;
		}
		memcpy(resolved, cand, sizeof resolved);
	}
	if (snprintf(out, size, "%s", resolved[0] ? resolved : ".") >= (int)size)
		return errno = ENAMETOOLONG, -1;
	return 0;
}

/* Portable fallback of openat2(RESOLVE_IN_ROOT). */
static int walk_in_root(int rootfd, const char *path, int flags, int nosymlinks)
{
	char resolved[PATH_MAX];
	if (canonical_in_root(rootfd, path, nosymlinks, resolved, sizeof resolved) < 0)
		return -1;
	return openat(rootfd, resolved, flags | O_NOFOLLOW | O_CLOEXEC);
}

/* Opens `path` (absolute, inside the container) with every symlink and ".."
 * resolved inside rootfd: a symlink to "/etc" means <rootfs>/etc. */
static int open_in_root(int rootfd, const char *path, int flags, int nosymlinks)
{
	while (*path == '/')
		path++;
	if (!*path)
		path = ".";
	if (!force_walk) {
		struct open_how how = {
			.flags = (uint64_t)(flags | O_CLOEXEC),
			.resolve = RESOLVE_NO_MAGICLINKS | (nosymlinks ? RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH : RESOLVE_IN_ROOT),
		};
		int fd = (int)syscall(SYS_openat2, rootfd, path, &how, sizeof how);
		if (fd >= 0 || errno != ENOSYS)
			return fd;
	}
	return walk_in_root(rootfd, path, flags, nosymlinks);
}

/* Like open_in_root(O_PATH), creating missing components (directories, the
 * last one a file when as_file) where they resolve inside the root: a missing
 * /data/sub with /data -> /srv is created as <rootfs>/srv/sub. Each step is
 * opened with O_NOFOLLOW, so a symlink swapped in meanwhile makes it fail. */
static int mkpath_in_root(int rootfd, const char *path, int as_file, int nosymlinks)
{
	int fd = open_in_root(rootfd, path, O_PATH, nosymlinks);
	if (fd >= 0 || errno != ENOENT)
		return fd;
	char canon[PATH_MAX];
	if (canonical_in_root(rootfd, path, nosymlinks, canon, sizeof canon) < 0)
		return -1;
	int dir = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
	if (dir < 0)
		return -1;
	char *save = NULL;
	char *comp = strtok_r(canon, "/", &save);
	while (comp) {
		char *next = strtok_r(NULL, "/", &save);
		int last = next == NULL;
		if (!strcmp(comp, ".")) {
			comp = next;
			continue;
		}
		int flags = O_PATH | O_NOFOLLOW | O_CLOEXEC | (last && as_file ? 0 : O_DIRECTORY);
		int child = openat(dir, comp, flags);
		if (child < 0 && errno == ENOENT) {
			int rc;
			if (last && as_file) {
				rc = openat(dir, comp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
				if (rc >= 0)
					close(rc);
			} else {
				rc = mkdirat(dir, comp, 0755);
			}
			if (rc < 0 && errno != EEXIST) {
				close(dir);
				return -1;
			}
			child = openat(dir, comp, flags);
		}
		close(dir);
		if (child < 0)
			return -1;
		dir = child;
		comp = next;
	}
	return dir;
}

static void fd_path(char *buf, size_t size, int fd)
{
	snprintf(buf, size, "/proc/self/fd/%d", fd);
}

/* ---------- container init (stage C) ---------- */

static unsigned long statfs_lock_flags(const char *path)
{
	struct statvfs sv;
	unsigned long f = 0;
	if (statvfs(path, &sv) < 0)
		return 0;
	if (sv.f_flag & ST_NOSUID) f |= MS_NOSUID;
	if (sv.f_flag & ST_NODEV) f |= MS_NODEV;
	if (sv.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
	if (sv.f_flag & ST_NOATIME) f |= MS_NOATIME;
	if (sv.f_flag & ST_NODIRATIME) f |= MS_NODIRATIME;
	if (sv.f_flag & ST_RELATIME) f |= MS_RELATIME;
	return f;
}

#define PROPAGATION (MS_SHARED | MS_SLAVE | MS_PRIVATE | MS_UNBINDABLE)

static void do_mount(int rootfd, const struct mount_entry *m)
{
	int is_bind = (m->flags & MS_BIND) != 0;
	int as_file = 0;
	/* Filesystem mounts (proc, sysfs, the /dev tmpfs, devpts, ...) only go
	 * on a plain path: a symlink there is an attack (runc refuses them for
	 * /proc too). Bind mounts resolve symlinks, inside the rootfs. */
	int special = !is_bind;
	if (is_bind) {
		struct stat st;
		if (stat(m->source, &st) < 0)
			fail("mount %s: bind source \"%s\"", m->dest, m->source);
		as_file = !S_ISDIR(st.st_mode);
	}
	int fd = mkpath_in_root(rootfd, m->dest, as_file, special);
	if (fd < 0) {
		if (special && errno == ELOOP)
			fail("mount %s: the %s mount destination contains a symlink; expected a plain directory inside the rootfs",
			     m->dest, m->type);
		fail("mount %s: resolve destination inside the rootfs", m->dest);
	}
	struct stat st;
	if (fstat(fd, &st) < 0)
		fail("mount %s: stat destination", m->dest);
	if (as_file ? S_ISDIR(st.st_mode) : !S_ISDIR(st.st_mode)) {
		errno = 0;
		fail("mount %s: destination is %s but the source is %s", m->dest,
		     S_ISDIR(st.st_mode) ? "a directory" : "not a directory", as_file ? "a file" : "a directory");
	}
	char target[64];
	fd_path(target, sizeof target, fd);
	unsigned long flags = m->flags & ~PROPAGATION;
	const char *data = m->data[0] ? m->data : NULL;
	if (is_bind) {
		if (mount(m->source, target, NULL, MS_BIND | (flags & MS_REC), NULL) < 0)
			fail("mount %s: bind \"%s\"", m->dest, m->source);
	} else if (mount(m->source[0] ? m->source : m->type, target, m->type, flags, data) < 0) {
		fail("mount %s: mount %s", m->dest, m->type);
	}
	close(fd);
	/* Re-open: the old fd names the directory under the new mount. */
	unsigned long extra = flags & ~(MS_BIND | MS_REC | MS_REMOUNT);
	if ((is_bind && extra) || (m->flags & PROPAGATION)) {
		fd = open_in_root(rootfd, m->dest, O_PATH, 0);
		if (fd < 0)
			fail("mount %s: re-open destination", m->dest);
		fd_path(target, sizeof target, fd);
		if (is_bind && extra &&
		    mount(NULL, target, NULL, MS_BIND | MS_REMOUNT | extra | statfs_lock_flags(target), NULL) < 0)
			fail("mount %s: remount bind with flags %#lx", m->dest, extra);
		if ((m->flags & PROPAGATION) && mount(NULL, target, NULL, m->flags & (PROPAGATION | MS_REC), NULL) < 0)
			fail("mount %s: set propagation", m->dest);
		close(fd);
	}
}

static const struct {
	const char *name;
	unsigned maj, min;
} devices[] = {
	{ "null", 1, 3 }, { "zero", 1, 5 }, { "full", 1, 7 }, { "random", 1, 8 }, { "urandom", 1, 9 }, { "tty", 5, 0 },
};

static const struct {
	const char *name, *target;
} dev_links[] = {
	{ "ptmx", "pts/ptmx" }, { "fd", "/proc/self/fd" }, { "stdin", "/proc/self/fd/0" },
	{ "stdout", "/proc/self/fd/1" }, { "stderr", "/proc/self/fd/2" }, { "core", "/proc/kcore" },
};

/* Populates the container's /dev (a tmpfs from the mount list). */
static void setup_dev(int rootfd)
{
	int dev = open_in_root(rootfd, "/dev", O_PATH | O_DIRECTORY, 1);
	if (dev < 0)
		fail("open /dev inside the rootfs");
	for (size_t i = 0; i < sizeof devices / sizeof devices[0]; i++) {
		if (mknodat(dev, devices[i].name, S_IFCHR | 0666, makedev(devices[i].maj, devices[i].min)) == 0)
			continue;
		if (errno == EEXIST)
			continue;
		/* No mknod here: bind the host's node instead. */
		int f = openat(dev, devices[i].name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
		if (f < 0)
			fail("create /dev/%s", devices[i].name);
		close(f);
		char host[64], target[64];
		snprintf(host, sizeof host, "/dev/%s", devices[i].name);
		f = openat(dev, devices[i].name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		fd_path(target, sizeof target, f);
		if (f < 0 || mount(host, target, NULL, MS_BIND, NULL) < 0)
			fail("bind %s", host);
		close(f);
	}
	for (size_t i = 0; i < sizeof dev_links / sizeof dev_links[0]; i++)
		if (symlinkat(dev_links[i].target, dev, dev_links[i].name) < 0 && errno != EEXIST)
			fail("symlink /dev/%s", dev_links[i].name);
	close(dev);
}

static void mask_paths(void)
{
	for (int i = 0; i < spec.nmasked; i++) {
		const char *p = spec.masked[i];
		struct stat st;
		if (lstat(p, &st) < 0) {
			if (errno == ENOENT)
				continue;
			fail("mask %s: stat", p);
		}
		if (S_ISDIR(st.st_mode)) {
			if (mount("tmpfs", p, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0,mode=0555") < 0)
				fail("mask %s: mount read-only tmpfs", p);
		} else if (!S_ISLNK(st.st_mode) && mount("/dev/null", p, NULL, MS_BIND, NULL) < 0) {
			fail("mask %s: bind /dev/null", p);
		}
	}
	for (int i = 0; i < spec.nreadonly; i++) {
		const char *p = spec.readonly[i];
		struct stat st;
		if (lstat(p, &st) < 0) {
			if (errno == ENOENT)
				continue;
			fail("readonly %s: stat", p);
		}
		if (S_ISLNK(st.st_mode))
			continue;
		if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) < 0)
			fail("readonly %s: bind", p);
		if (mount(NULL, p, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC | statfs_lock_flags(p), NULL) < 0)
			fail("readonly %s: remount read-only", p);
	}
}

/* Bounding set: drop everything not listed (needs CAP_SETPCAP: before setuid). */
static void drop_bounding(void)
{
	for (int c = 0; c < 64; c++) {
		if (prctl(PR_CAPBSET_READ, c, 0, 0, 0) < 0)
			break; /* past the kernel's last capability */
		if (!(spec.cap_bnd & (1ULL << c)) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0)
			fail("drop capability %d from the bounding set", c);
	}
}

/* Effective, permitted, inheritable, then ambient (after setuid, with keepcaps). */
/* A pty from the container's own devpts: the master goes to the shim, the
 * slave becomes stdio and controlling terminal (and /dev/console). */
static void setup_terminal(void)
{
	int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (master < 0)
		fail("open /dev/ptmx");
	int unlock = 0, n = -1;
	if (ioctl(master, TIOCSPTLCK, &unlock) < 0 || ioctl(master, TIOCGPTN, &n) < 0)
		fail("unlock pty");
	int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (slave < 0)
		fail("open pty slave");
	if (spec.rows && spec.cols) {
		struct winsize ws = { .ws_row = spec.rows, .ws_col = spec.cols };
		if (ioctl(master, TIOCSWINSZ, &ws) < 0)
			fail("set window size");
	}
	if (fchown(slave, spec.uid, spec.gid) < 0)
		fail("chown pty");
	char pts[64];
	snprintf(pts, sizeof pts, "/dev/pts/%d", n);
	int c = open("/dev/console", O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (c >= 0) {
		close(c);
		if (mount(pts, "/dev/console", NULL, MS_BIND, NULL) < 0)
			fail("bind %s to /dev/console", pts);
	}
	if (send_fd(init_sock, MSG_PTY, master) < 0)
		fail("send the pty to the shim");
	close(master);
	if (setsid() < 0 || ioctl(slave, TIOCSCTTY, 0) < 0)
		fail("make the pty the controlling terminal");
	if (dup2(slave, 0) < 0 || dup2(slave, 1) < 0 || dup2(slave, 2) < 0)
		fail("pty as stdio");
	close(slave);
}

static void set_caps(void)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct data[2] = {
		{ (uint32_t)spec.cap_eff, (uint32_t)spec.cap_prm, (uint32_t)spec.cap_inh },
		{ (uint32_t)(spec.cap_eff >> 32), (uint32_t)(spec.cap_prm >> 32), (uint32_t)(spec.cap_inh >> 32) },
	};
	if (syscall(SYS_capset, &hdr, data) < 0)
		fail("capset");
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
		fail("clear ambient capabilities");
	for (int c = 0; c < 64; c++)
		if ((spec.cap_amb & (1ULL << c)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0) < 0)
			fail("raise ambient capability %d", c);
}

/*
 * Berth's default seccomp filter: a deny list in the spirit of Docker's
 * default profile for what capabilities do not already guard. Denied with
 * EPERM: keyrings, kernel modules, kexec/reboot, bpf, perf events,
 * userfaultfd, io_uring, mount/namespace calls (unshare, setns, and clone
 * with any CLONE_NEW* flag: no user namespaces from inside), handle-based
 * opens, raw port I/O, clock and accounting changes, syslog, quotactl.
 * clone3 gets ENOSYS so libc falls back to clone, whose flags can be checked.
 * Other architectures' syscalls (x32, i386) are refused.
 */
static void install_seccomp(void)
{
	static const int denied[] = {
		__NR_add_key, __NR_keyctl, __NR_request_key, __NR_init_module, __NR_finit_module, __NR_delete_module,
		__NR_kexec_load, __NR_kexec_file_load, __NR_reboot, __NR_bpf, __NR_perf_event_open, __NR_userfaultfd,
		__NR_io_uring_setup, __NR_io_uring_enter, __NR_io_uring_register, __NR_mount, __NR_umount2,
		__NR_pivot_root, __NR_unshare, __NR_setns, __NR_open_by_handle_at, __NR_name_to_handle_at, __NR_iopl,
		__NR_ioperm, __NR_acct, __NR_settimeofday, __NR_clock_settime, __NR_clock_adjtime, __NR_syslog,
		__NR_quotactl, __NR_swapon, __NR_swapoff, __NR_lookup_dcookie, __NR_vhangup, __NR_fsopen, __NR_fsmount,
		__NR_fsconfig, __NR_move_mount, __NR_open_tree, __NR_mount_setattr,
	};
	enum { N = sizeof denied / sizeof denied[0] };
	struct sock_filter f[6 + 2 * N + 7];
	size_t i = 0;
	const unsigned ns_flags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |
				  CLONE_NEWNET | CLONE_NEWCGROUP;
	f[i++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
	f[i++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0);
	f[i++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM);
	f[i++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
	f[i++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000 /* x32 */, 0, 1);
	f[i++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM);
	for (size_t d = 0; d < N; d++) {
		f[i++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)denied[d], 0, 1);
		f[i++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM);
	}
	f[i++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone3, 0, 1);
	f[i++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS);
	f[i++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, 0, 3);
	f[i++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]));
	f[i++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, ns_flags, 0, 1);
	f[i++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM);
	f[i++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	struct sock_fprog prog = { .len = (unsigned short)i, .filter = f };
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0)
		fail("install the seccomp filter");
}

static const char *env_path(void)
{
	for (int i = 0; i < spec.nenv; i++)
		if (!strncmp(spec.env[i], "PATH=", 5))
			return spec.env[i] + 5;
	return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
}

static int is_executable(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* Finds args[0] the way a shell would, with the container's PATH. */
static void find_executable(char *out, size_t size)
{
	const char *file = spec.args[0];
	if (strchr(file, '/')) {
		snprintf(out, size, "%s", file);
		if (!is_executable(out))
			fail("executable \"%s\" is not an executable file", file);
		return;
	}
	const char *p = env_path();
	while (*p) {
		const char *e = strchrnul(p, ':');
		int n = snprintf(out, size, "%.*s/%s", (int)(e - p), p, file);
		if (e != p && n > 0 && (size_t)n < size && is_executable(out))
			return;
		p = *e ? e + 1 : e;
	}
	errno = 0;
	fail("executable \"%s\" not found in $PATH (%s)", file, env_path());
}

/* The last steps before exec, shared by the init and exec stages: enter the
 * working directory (resolved after pivot_root or setns, so it cannot leave
 * the root: getcwd() fails for a directory outside it, CVE-2024-21626), cut
 * the capabilities, set no_new_privs, and find the executable on PATH. */
static void enter_workdir_drop_privileges(char *exe, size_t size)
{
	const char *cwd = spec.cwd ? spec.cwd : "/";
	if (chdir(cwd) < 0)
		fail("working directory \"%s\" inside the container", cwd);
	char buf[PATH_MAX];
	if (!getcwd(buf, sizeof buf) || buf[0] != '/') {
		errno = 0;
		fail("working directory \"%s\" is outside the container root", cwd);
	}
	if (spec.have_caps)
		set_caps();
	if (spec.no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		fail("set no_new_privs");
	find_executable(exe, size);
}

/* Stage C. Never returns. */
/* True when the spec joins an existing network namespace (a CNI-made one, or the host's). */
static int joins_netns(void)
{
	for (int i = 0; i < spec.nns; i++)
		if (spec.ns[i].type == CLONE_NEWNET && spec.ns[i].path[0])
			return 1;
	return 0;
}

/* A new network namespace starts with lo down: bring it up (127.0.0.1 works, as on every runtime). */
static void loopback_up(void)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		fail("socket for lo");
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	memcpy(ifr.ifr_name, "lo", 3);
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
		fail("read the flags of lo");
	if (!(ifr.ifr_flags & IFF_UP)) {
		ifr.ifr_flags |= IFF_UP;
		if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
			fail("bring lo up");
	}
	close(fd);
}

static void init_main(int sock, int in, int out, int err)
{
	/* Own stdio, the socket at fd 3, and nothing else of the shim's. */
	if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
		_exit(120);
	if (sock != 3 && (dup3(sock, 3, O_CLOEXEC) < 0))
		_exit(121);
	init_sock = 3;
	syscall(SYS_close_range, 4, ~0U, 0);
	umask(0);

	for (int i = 0; i < spec.nns; i++) {
		if (!spec.ns[i].path[0])
			continue;
		int fd = open(spec.ns[i].path, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || setns(fd, spec.ns[i].type) < 0)
			fail("join namespace %s", spec.ns[i].path);
		close(fd);
	}
	if (!joins_netns())
		loopback_up();
	for (int i = 0; i < spec.ncgroups; i++) {
		int fd = open(spec.cgroups[i], O_WRONLY | O_CLOEXEC);
		if (fd < 0 || write_all(fd, "0", 1) < 0)
			fail("join cgroup %s", spec.cgroups[i]);
		close(fd);
	}
	if (unshare(CLONE_NEWCGROUP) < 0)
		fail("unshare cgroup namespace");
	if (spec.hostname && sethostname(spec.hostname, strlen(spec.hostname)) < 0)
		fail("sethostname \"%s\"", spec.hostname);

	/* Root filesystem: nothing we mount may propagate back to the host. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		fail("make / private");
	if (mount(spec.rootfs, spec.rootfs, NULL, MS_BIND | MS_REC, NULL) < 0)
		fail("bind rootfs \"%s\" onto itself", spec.rootfs);
	int rootfd = open(spec.rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		fail("open rootfs \"%s\"", spec.rootfs);
	int have_dev = 0;
	for (int i = 0; i < spec.nmounts; i++) {
		do_mount(rootfd, &spec.mounts[i]);
		if (!strcmp(spec.mounts[i].dest, "/dev"))
			have_dev = 1;
	}
	if (have_dev)
		setup_dev(rootfd);

	if (fchdir(rootfd) < 0)
		fail("chdir to rootfs");
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		fail("pivot_root");
	if (umount2(".", MNT_DETACH) < 0)
		fail("detach the old root");
	if (chdir("/") < 0)
		fail("chdir /");
	close(rootfd);

	mask_paths();
	if (spec.terminal)
		setup_terminal();
	if (spec.rootfs_readonly &&
	    mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | statfs_lock_flags("/"), NULL) < 0)
		fail("remount / read-only");

	for (int i = 0; i < spec.nrlimits; i++) {
		struct rlimit rl = { spec.rlimits[i].soft, spec.rlimits[i].hard };
		if (setrlimit(spec.rlimits[i].resource, &rl) < 0)
			fail("setrlimit %s to %llu:%llu", spec.rlimits[i].name, (unsigned long long)rl.rlim_cur,
			     (unsigned long long)rl.rlim_max);
	}

	/* User and capabilities: keep permitted caps across setuid, then cut them. */
	if (spec.have_caps)
		drop_bounding();
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
		fail("set keepcaps");
	if (setgroups((size_t)spec.ngroups, spec.groups) < 0)
		fail("setgroups");
	if (setresgid(spec.gid, spec.gid, spec.gid) < 0)
		fail("setgid %u", (unsigned)spec.gid);
	if (setresuid(spec.uid, spec.uid, spec.uid) < 0)
		fail("setuid %u", (unsigned)spec.uid);
	if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
		fail("clear keepcaps");

	char exe[PATH_MAX];
	enter_workdir_drop_privileges(exe, sizeof exe);
	umask(022);

	send_msg(init_sock, MSG_READY, 0, NULL);
	struct msg m;
	ssize_t n;
	while ((n = recv(init_sock, &m, sizeof m, 0)) < 0 && errno == EINTR)
		;
	if (n != (ssize_t)sizeof m || m.type != MSG_START)
		_exit(1); /* the shim went away before starting us */

	/* Close every fd above stdio at exec; the socket closes last, telling S. */
	if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
		for (int fd = 4; fd < 65536; fd++)
			fcntl(fd, F_SETFD, FD_CLOEXEC);
	spec.args[spec.nargs] = NULL;
	spec.env[spec.nenv] = NULL;
	sigset_t all;
	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	if (spec.seccomp)
		install_seccomp(); /* last: nothing after it but execve */
	execve(exe, spec.args, spec.env);
	fail("exec \"%s\"", exe);
}

/* ---------- the shim (stage S) ---------- */

struct stream {
	int fd;
	const char *name;
	size_t len;
	char buf[16384];
};

static struct stream streams[2];
static int log_fd = -1;
static long long log_size;

#define MAX_CLIENTS 8
static int clients[MAX_CLIENTS]; /* attached sockets (terminal only); 0 = free slot */
static int raw_out = -1;         /* foreground terminal: the caller's stdout */

static void log_open(void)
{
	log_fd = open(spec.log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (log_fd < 0) {
		fprintf(stderr, "berth-helper: open log %s: %s\n", spec.log_path, strerror(errno));
		return;
	}
	struct stat st;
	log_size = fstat(log_fd, &st) == 0 ? st.st_size : 0;
}

static void log_rotate(void)
{
	char from[PATH_MAX], to[PATH_MAX];
	close(log_fd);
	for (int i = spec.log_files - 1; i >= 1; i--) {
		if (i == 1)
			snprintf(from, sizeof from, "%s", spec.log_path);
		else
			snprintf(from, sizeof from, "%s.%d", spec.log_path, i - 1);
		snprintf(to, sizeof to, "%s.%d", spec.log_path, i);
		rename(from, to);
	}
	if (spec.log_files == 1 && truncate(spec.log_path, 0) < 0)
		fprintf(stderr, "berth-helper: truncate log: %s\n", strerror(errno));
	log_open();
}

static void log_record(struct stream *s, const char *text, size_t len, char tag)
{
	static char line[sizeof streams[0].buf + 64];
	char ts[40];
	if (log_fd < 0)
		return;
	iso_time(ts, sizeof ts);
	int h = snprintf(line, sizeof line, "%s %s %c ", ts, s->name, tag);
	memcpy(line + h, text, len);
	line[h + len] = '\n';
	size_t total = (size_t)h + len + 1;
	if (spec.log_max > 0 && log_size > 0 && log_size + (long long)total > spec.log_max)
		log_rotate();
	if (log_fd >= 0 && write_all(log_fd, line, total) == 0)
		log_size += (long long)total;
}

/* Copies terminal output to the caller (foreground) or the attached clients. */
static void forward_raw(const char *data, size_t len)
{
	if (raw_out >= 0) {
		write_all(raw_out, data, len);
		return;
	}
	for (int i = 0; i < MAX_CLIENTS; i++) {
		/* A client that cannot keep up is dropped rather than stalling the shim. */
		if (clients[i] > 0 && send(clients[i], data, len, MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)len) {
			close(clients[i]);
			clients[i] = 0;
		}
	}
}

/* Reads what is available on a stream; returns 0 at end of stream (EIO on a
 * pty master means every slave is closed). Terminal output also goes raw to
 * the caller or clients; complete lines go to the log. */
static int stream_read(struct stream *s)
{
	ssize_t n = read(s->fd, s->buf + s->len, sizeof s->buf - s->len);
	if (n < 0)
		return errno == EINTR || errno == EAGAIN ? 1 : 0;
	if (n == 0) {
		if (s->len)
			log_record(s, s->buf, s->len, 'F');
		s->len = 0;
		return 0;
	}
	if (spec.terminal)
		forward_raw(s->buf + s->len, (size_t)n);
	s->len += (size_t)n;
	char *start = s->buf, *nl;
	while ((nl = memchr(start, '\n', s->len - (size_t)(start - s->buf)))) {
		size_t len = (size_t)(nl - start);
		if (spec.terminal && len > 0 && start[len - 1] == '\r')
			len--;
		log_record(s, start, len, 'F');
		start = nl + 1;
	}
	s->len -= (size_t)(start - s->buf);
	memmove(s->buf, start, s->len);
	if (s->len == sizeof s->buf) {
		log_record(s, s->buf, s->len, 'P');
		s->len = 0;
	}
	return 1;
}

static void json_string(char *out, size_t size, const char *s)
{
	size_t o = 0;
	for (; *s && o + 8 < size; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			o += (size_t)snprintf(out + o, size - o, "\\%c", c);
		else if (c < 0x20)
			o += (size_t)snprintf(out + o, size - o, "\\u%04x", c);
		else
			out[o++] = (char)c;
	}
	out[o] = 0;
}

static long long oom_kills(void)
{
	if (!spec.oom_file)
		return 0;
	char buf[4096];
	int fd = open(spec.oom_file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	char *p = strstr(buf, "oom_kill ");
	return p ? strtoll(p + 9, NULL, 10) : 0;
}

static void write_exit(int status, const char *error)
{
	char ts[40], err[1024], body[1400];
	int code = 255, sig = 0;
	if (status >= 0 && WIFEXITED(status))
		code = WEXITSTATUS(status);
	else if (status >= 0 && WIFSIGNALED(status))
		sig = WTERMSIG(status), code = 128 + sig;
	iso_time(ts, sizeof ts);
	json_string(err, sizeof err, error ? error : "");
	snprintf(body, sizeof body,
		 "{\"exitCode\":%d,\"signal\":%d,\"oomKilled\":%s,\"finishedAt\":\"%s\",\"error\":\"%s\"}\n", code, sig,
		 oom_kills() > 0 ? "true" : "false", ts, err);
	write_state_file("exit.json", body);
}

/* Tells the caller of the detached shim how creation went. */
static int report_fd = -1;

static void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void report(const char *fmt, ...)
{
	if (report_fd < 0)
		return;
	char line[600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	write_all(report_fd, line, strlen(line));
	close(report_fd);
	report_fd = -1;
}

/* Handles one line from the control FIFO. */
static void control_command(const char *cmd, int sock, int *started, int *exec_pending, int master)
{
	unsigned rows, cols;
	if (!strncmp(cmd, "start", 5) && !*started) {
		send_msg(sock, MSG_START, 0, NULL);
		*started = *exec_pending = 1;
	} else if (sscanf(cmd, "resize %u %u", &rows, &cols) == 2 && master >= 0) {
		struct winsize ws = { .ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols };
		ioctl(master, TIOCSWINSZ, &ws);
	}
}

static struct termios saved_tty;
static int tty_saved;

static void restore_tty(void)
{
	if (tty_saved)
		tcsetattr(0, TCSAFLUSH, &saved_tty);
}

/* Moves a container's input from the stdin client to its pipe (see "stdin"
 * in the header). When the client leaves, the pipe and the socket close. */
static void stdin_relay(struct pollfd *spfd, int *client, int *w, int *listener, const char *path, char *buf, size_t *len, size_t *off)
{
	if (spfd[0].revents) {
		ssize_t n = recv(*client, buf, 4096, MSG_DONTWAIT);
		if (n > 0) {
			*len = (size_t)n;
			*off = 0;
		} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
			close(*client);
			*client = -1;
			if (*w >= 0)
				close(*w);
			*w = -1;
			if (*listener >= 0) {
				close(*listener);
				unlink(path);
			}
			*listener = -1;
		}
	}
	if (*len > 0 && *w >= 0) {
		ssize_t n = write(*w, buf + *off, *len - *off);
		if (n > 0) {
			*off += (size_t)n;
			if (*off == *len)
				*len = *off = 0;
		} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
			/* the container closed its stdin: drop the input */
			*len = *off = 0;
		}
	}
}

/* A listening unix socket at DIR/NAME; a path longer than a socket address
 * is bound through an fd of DIR (agent/runtime connects the same way). */
static int listen_unix(const char *dir, const char *name, char *path, size_t size)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int len = snprintf(path, size, "%s/%s", dir, name);
	if (len >= (int)size)
		die("%s socket path \"%s\" is too long", name, path);
	int dirfd = -1;
	if (len < (int)sizeof addr.sun_path) {
		memcpy(addr.sun_path, path, (size_t)len + 1);
	} else {
		dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (dirfd < 0)
			die("open %s: %s", dir, strerror(errno));
		snprintf(addr.sun_path, sizeof addr.sun_path, "/proc/self/fd/%d/%s", dirfd, name);
	}
	unlink(path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, 4) < 0)
		die("%s socket %s: %s", name, path, strerror(errno));
	if (dirfd >= 0)
		close(dirfd);
	chmod(path, 0600);
	return fd;
}

static int shim_main(int foreground)
{
	int sv[2], out[2] = { -1, -1 }, err[2] = { -1, -1 }, in = 0;
	char path[PATH_MAX], attach_path[PATH_MAX], stdin_path[PATH_MAX];
	int listener = -1;
	/* Input of a container without a terminal (spec "stdin"): the pipe's write end, its socket, its client. */
	int stdin_w = -1, stdin_listener = -1, stdin_client = -1;
	char stdin_buf[4096];
	size_t stdin_len = 0, stdin_off = 0;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		die("socketpair: %s", strerror(errno));
	if (!foreground) {
		int inp[2];
		if (spec.open_stdin && !spec.terminal) {
			if (pipe2(inp, O_CLOEXEC) < 0)
				die("stdin pipe: %s", strerror(errno));
			in = inp[0];
			stdin_w = inp[1];
			fcntl(stdin_w, F_SETFL, fcntl(stdin_w, F_GETFL) | O_NONBLOCK);
			stdin_listener = listen_unix(spec.state_dir, "stdin", stdin_path, sizeof stdin_path);
		} else {
			in = open("/dev/null", O_RDONLY | O_CLOEXEC);
		}
		if (in < 0 || (!spec.terminal && (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0)))
			die("stdio pipes: %s", strerror(errno));
		if (spec.terminal)
			out[1] = err[1] = in;
	}
	snprintf(path, sizeof path, "%s/control", spec.state_dir);
	unlink(path);
	if (mkfifo(path, 0600) < 0)
		die("mkfifo %s: %s", path, strerror(errno));
	int control = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (control < 0)
		die("open %s: %s", path, strerror(errno));
	if (spec.terminal && !foreground) {
		listener = listen_unix(spec.state_dir, "attach", attach_path, sizeof attach_path);
	}

	sigset_t mask, old;
	sigemptyset(&mask);
	int forwarded[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH };
	sigaddset(&mask, SIGCHLD);
	if (foreground)
		for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
			sigaddset(&mask, forwarded[i]);
	sigprocmask(SIG_BLOCK, &mask, &old);
	int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0)
		die("signalfd: %s", strerror(errno));

	unsigned long flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET;
	for (int i = 0; i < spec.nns; i++)
		if (spec.ns[i].path[0])
			flags &= ~(unsigned long)spec.ns[i].type;
	pid_t pid = (pid_t)syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, 0);
	if (pid < 0) {
		report("error clone container init: %s\n", strerror(errno));
		die("clone: %s", strerror(errno));
	}
	if (pid == 0) {
		sigprocmask(SIG_SETMASK, &old, NULL);
		init_main(sv[1], in, foreground ? 1 : out[1], foreground ? 2 : err[1]);
	}
	close(sv[1]);
	if (!foreground) {
		if (!spec.terminal) {
			close(out[1]);
			close(err[1]);
		}
		close(in);
	}

	/* Stage 1: the pty (terminal only), then READY or ERROR. */
	struct msg m;
	ssize_t n;
	int master = -1, passed;
	while ((n = recv_msg(sv[0], &m, &passed, 0)) == (ssize_t)sizeof m && m.type == MSG_PTY)
		master = passed;
	const char *setup_error = NULL;
	if (n != (ssize_t)sizeof m || m.type != MSG_READY)
		setup_error = n == (ssize_t)sizeof m && m.type == MSG_ERROR ? m.text : "container init exited during setup";

	char line[128];
	int started = 0, exec_pending = 0, status = -1, exited = 0;
	char exec_error[480] = "";
	unsigned long long start_time = 0;
	if (!setup_error) {
		start_time = proc_start_time(pid);
		/* Start at once (autostart): the state files are written while it execs. */
		if (spec.autostart)
			send_msg(sv[0], MSG_START, 0, NULL);
		snprintf(line, sizeof line, "%d %llu\n", pid, start_time);
		write_state_file("init.pid", line);
		snprintf(line, sizeof line, "%d\n", getpid());
		write_state_file("shim.pid", line);
	}
	if (!setup_error && spec.autostart) {
		/* Report only once exec succeeded (or failed). */
		started = 1;
		n = recv_msg(sv[0], &m, &passed, 0);
		if (n == (ssize_t)sizeof m && m.type == MSG_ERROR)
			setup_error = m.text;
	}
	if (setup_error) {
		int st = -1;
		waitpid(pid, &st, 0);
		write_exit(st, setup_error);
		unlink(path);
		if (listener >= 0)
			unlink(attach_path);
		if (stdin_listener >= 0)
			unlink(stdin_path);
		report("error %s\n", setup_error);
		if (foreground)
			fprintf(stderr, "berth-helper: %s\n", setup_error);
		return foreground ? 127 : 1;
	}
	if (started) {
		iso_time(line, sizeof line);
		strcat(line, "\n");
		write_state_file("started", line);
	}
	report("ok %d %d %llu\n", pid, getpid(), start_time);

	streams[0].name = "stdout";
	streams[1].name = "stderr";
	streams[0].fd = streams[1].fd = -1;
	int in_fd = -1; /* foreground terminal: the caller's stdin */
	if (spec.terminal && master >= 0) {
		fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
		streams[0].fd = master;
		if (foreground) {
			raw_out = 1;
			in_fd = 0;
			if (isatty(0) && tcgetattr(0, &saved_tty) == 0) {
				struct termios raw = saved_tty;
				cfmakeraw(&raw);
				tty_saved = tcsetattr(0, TCSANOW, &raw) == 0;
				atexit(restore_tty);
				struct winsize ws;
				if (ioctl(0, TIOCGWINSZ, &ws) == 0)
					ioctl(master, TIOCSWINSZ, &ws);
			}
		}
	} else if (!foreground) {
		streams[0].fd = out[0];
		streams[1].fd = err[0];
	}
	if (!foreground && spec.log_path)
		log_open();

	struct timespec exit_at = { 0, 0 };
	for (;;) {
		struct pollfd pfd[10 + MAX_CLIENTS] = {
			{ .fd = sfd, .events = POLLIN },
			{ .fd = control, .events = POLLIN },
			{ .fd = exec_pending ? sv[0] : -1, .events = POLLIN },
			{ .fd = streams[0].fd, .events = POLLIN },
			{ .fd = streams[1].fd, .events = POLLIN },
			{ .fd = exited ? -1 : listener, .events = POLLIN },
			{ .fd = exited ? -1 : in_fd, .events = POLLIN },
			{ .fd = exited || stdin_client >= 0 ? -1 : stdin_listener, .events = POLLIN },
		};
		/* After the clients: the stdin client, read only when the pipe took everything read before. */
		struct pollfd *spfd = &pfd[8 + MAX_CLIENTS];
		spfd[0].fd = !exited && stdin_len == 0 ? stdin_client : -1;
		spfd[0].events = POLLIN;
		spfd[1].fd = !exited && stdin_len > 0 ? stdin_w : -1;
		spfd[1].events = POLLOUT;
		for (int i = 0; i < MAX_CLIENTS; i++) {
			pfd[8 + i].fd = clients[i] > 0 && !exited ? clients[i] : -1;
			pfd[8 + i].events = POLLIN;
		}
		int timeout = -1;
		if (exited) {
			if (streams[0].fd < 0 && streams[1].fd < 0)
				break;
			/* Processes that inherited the pipes die with pid 1; give them 2 s. */
			struct timespec now;
			clock_gettime(CLOCK_MONOTONIC, &now);
			long ms = (now.tv_sec - exit_at.tv_sec) * 1000 + (now.tv_nsec - exit_at.tv_nsec) / 1000000;
			if (ms >= 2000)
				break;
			timeout = (int)(2000 - ms);
		}
		int r = poll(pfd, 10 + MAX_CLIENTS, timeout);
		if (r < 0 && errno != EINTR)
			die("poll: %s", strerror(errno));
		if (r <= 0)
			continue;
		if (spfd[0].revents || spfd[1].revents)
			stdin_relay(spfd, &stdin_client, &stdin_w, &stdin_listener, stdin_path, stdin_buf, &stdin_len, &stdin_off);
		if (pfd[7].revents && stdin_client < 0)
			stdin_client = accept4(stdin_listener, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		for (int i = 0; i < 2; i++)
			if (pfd[3 + i].revents && !stream_read(&streams[i])) {
				close(streams[i].fd);
				streams[i].fd = -1;
			}
		/* Commands first: a resize sent before input applies before the input. */
		if (pfd[1].revents) {
			char cmd[64];
			n = read(control, cmd, sizeof cmd - 1);
			if (n > 0) {
				cmd[n] = 0;
				for (char *c = strtok(cmd, "\n"); c; c = strtok(NULL, "\n"))
					control_command(c, sv[0], &started, &exec_pending, master);
			}
		}
		if (pfd[5].revents) {
			int c = accept4(listener, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
			int slot = -1;
			for (int i = 0; i < MAX_CLIENTS && c >= 0 && slot < 0; i++)
				if (clients[i] <= 0)
					slot = i;
			if (slot >= 0)
				clients[slot] = c;
			else if (c >= 0)
				close(c);
		}
		char buf[4096];
		if (pfd[6].revents) {
			n = read(in_fd, buf, sizeof buf);
			if (n > 0 && master >= 0)
				write_all(master, buf, (size_t)n);
			else if (n <= 0)
				in_fd = -1;
		}
		for (int i = 0; i < MAX_CLIENTS; i++) {
			if (!pfd[8 + i].revents)
				continue;
			n = recv(clients[i], buf, sizeof buf, MSG_DONTWAIT);
			if (n > 0 && master >= 0)
				write_all(master, buf, (size_t)n);
			else if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
				close(clients[i]);
				clients[i] = 0;
			}
		}
		if (pfd[2].revents) {
			n = recv_msg(sv[0], &m, &passed, MSG_DONTWAIT);
			if (n == (ssize_t)sizeof m && m.type == MSG_ERROR) {
				snprintf(exec_error, sizeof exec_error, "%s", m.text);
				if (foreground)
					fprintf(stderr, "berth-helper: %s\n", m.text);
			} else if (n <= 0) {
				if (!exec_error[0] && !exited) {
					iso_time(line, sizeof line);
					strcat(line, "\n");
					write_state_file("started", line);
				}
				exec_pending = 0;
			}
		}
		if (pfd[0].revents) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
				if ((int)si.ssi_signo == SIGWINCH && raw_out >= 0 && master >= 0) {
					struct winsize ws;
					if (ioctl(0, TIOCGWINSZ, &ws) == 0)
						ioctl(master, TIOCSWINSZ, &ws);
					continue;
				}
				if ((int)si.ssi_signo != SIGCHLD) {
					kill(pid, (int)si.ssi_signo);
					continue;
				}
				int st;
				pid_t w;
				while ((w = waitpid(-1, &st, WNOHANG)) > 0)
					if (w == pid && !exited) {
						status = st;
						exited = 1;
						clock_gettime(CLOCK_MONOTONIC, &exit_at);
					}
			}
		}
	}
	if (exec_pending) {
		/* the exec error, if any, is still in the socket */
		n = recv_msg(sv[0], &m, &passed, MSG_DONTWAIT);
		if (n == (ssize_t)sizeof m && m.type == MSG_ERROR)
			snprintf(exec_error, sizeof exec_error, "%s", m.text);
	}
	unlink(path);
	if (listener >= 0)
		unlink(attach_path);
	if (stdin_listener >= 0)
		unlink(stdin_path);
	if (stdin_client >= 0)
		close(stdin_client);
	for (int i = 0; i < MAX_CLIENTS; i++)
		if (clients[i] > 0)
			close(clients[i]); /* EOF tells attached clients the container ended */
	write_exit(status, exec_error[0] ? exec_error : (started ? NULL : "container exited before it was started"));
	if (status >= 0 && WIFEXITED(status))
		return WEXITSTATUS(status);
	if (status >= 0 && WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return 255;
}

/* ---------- exec (join a running container) ---------- */

/*
 * exec: E (this process) opens the init's namespaces and the container's
 * cgroup.procs files, enters its cgroup, ipc, uts, net, pid and mount
 * namespaces, and forks X, which is in the container's pid namespace. X
 * joins the cgroups through the opened files, sets user, capabilities and
 * no_new_privs, finds the executable in the container's PATH and execs it;
 * setup errors come back to E as MSG_ERROR on a socketpair (as for init).
 * E forwards signals, relays a terminal if asked, and exits with X's status.
 */
static int exec_main(void)
{
	static const struct {
		const char *name;
		int type;
	} order[] = { { "cgroup", CLONE_NEWCGROUP }, { "ipc", CLONE_NEWIPC }, { "uts", CLONE_NEWUTS },
		      { "net", CLONE_NEWNET }, { "pid", CLONE_NEWPID }, { "mnt", CLONE_NEWNS } };
	int nsfd[6];
	if (spec.target <= 0)
		die("exec: the spec has no target pid");
	for (size_t i = 0; i < 6; i++) {
		char p[64];
		snprintf(p, sizeof p, "/proc/%d/ns/%s", spec.target, order[i].name);
		nsfd[i] = open(p, O_RDONLY | O_CLOEXEC);
		if (nsfd[i] < 0)
			die("exec: open %s: %s", p, strerror(errno));
	}
	/* Opened here, written by X: only the process itself joins the cgroups. */
	int cgfd[16];
	for (int i = 0; i < spec.ncgroups; i++) {
		cgfd[i] = open(spec.cgroups[i], O_WRONLY | O_CLOEXEC);
		if (cgfd[i] < 0)
			die("exec: open %s: %s", spec.cgroups[i], strerror(errno));
	}
	for (size_t i = 0; i < 6; i++) {
		if (setns(nsfd[i], order[i].type) < 0)
			die("exec: enter %s namespace of pid %d: %s", order[i].name, spec.target, strerror(errno));
		close(nsfd[i]);
	}
	int master = -1, slave = -1;
	if (spec.terminal) {
		master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
		int unlock = 0;
		if (master < 0 || ioctl(master, TIOCSPTLCK, &unlock) < 0)
			die("exec: open the container's /dev/ptmx: %s", strerror(errno));
		slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
		if (slave < 0 || fchown(slave, spec.uid, spec.gid) < 0)
			die("exec: open pty slave: %s", strerror(errno));
		struct winsize ws = { .ws_row = spec.rows, .ws_col = spec.cols };
		if (isatty(0))
			ioctl(0, TIOCGWINSZ, &ws);
		if (ws.ws_row && ws.ws_col)
			ioctl(master, TIOCSWINSZ, &ws);
	}
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		die("socketpair: %s", strerror(errno));
	sigset_t mask, old;
	sigemptyset(&mask);
	int forwarded[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCHLD };
	for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
		sigaddset(&mask, forwarded[i]);
	sigprocmask(SIG_BLOCK, &mask, &old);
	int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0)
		die("signalfd: %s", strerror(errno));

	pid_t pid = fork();
	if (pid < 0)
		die("exec: fork: %s", strerror(errno));
	if (pid == 0) {
		sigprocmask(SIG_SETMASK, &old, NULL);
		close(sv[0]);
		init_sock = sv[1];
		for (int i = 0; i < spec.ncgroups; i++)
			if (write_all(cgfd[i], "0", 1) < 0)
				fail("join cgroup %s", spec.cgroups[i]);
		if (slave >= 0) {
			if (setsid() < 0 || ioctl(slave, TIOCSCTTY, 0) < 0)
				fail("make the pty the controlling terminal");
			if (dup2(slave, 0) < 0 || dup2(slave, 1) < 0 || dup2(slave, 2) < 0)
				fail("pty as stdio");
		}
		if (spec.have_caps)
			drop_bounding();
		if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0 || setgroups((size_t)spec.ngroups, spec.groups) < 0 ||
		    setresgid(spec.gid, spec.gid, spec.gid) < 0 || setresuid(spec.uid, spec.uid, spec.uid) < 0 ||
		    prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
			fail("set user %u:%u", (unsigned)spec.uid, (unsigned)spec.gid);
		char exe[PATH_MAX];
		enter_workdir_drop_privileges(exe, sizeof exe);
		if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
			for (int fd = 3; fd < 65536; fd++)
				fcntl(fd, F_SETFD, FD_CLOEXEC);
		spec.args[spec.nargs] = NULL;
		spec.env[spec.nenv] = NULL;
		if (spec.seccomp)
			install_seccomp();
		execve(exe, spec.args, spec.env);
		fail("exec \"%s\"", exe);
	}
	close(sv[1]);
	for (int i = 0; i < spec.ncgroups; i++)
		close(cgfd[i]);
	if (slave >= 0)
		close(slave);
	int in_fd = -1;
	/* A terminal whose caller is not one (the agent relays it through pipes):
	 * window sizes come as "ROWS COLS\n" lines on fd 4 when the caller says so
	 * (BERTH_HELPER_RESIZE_FD=4; agent/sys/linux.ts). */
	int resize_fd = -1;
	char resize_buf[64];
	size_t resize_len = 0;
	if (master >= 0) {
		fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
		in_fd = 0;
		if (isatty(0) && tcgetattr(0, &saved_tty) == 0) {
			struct termios raw = saved_tty;
			cfmakeraw(&raw);
			tty_saved = tcsetattr(0, TCSANOW, &raw) == 0;
			atexit(restore_tty);
		}
		const char *rfd = getenv("BERTH_HELPER_RESIZE_FD");
		if (rfd && strcmp(rfd, "4") == 0)
			resize_fd = 4;
	}
	char error[480] = "";
	int status = -1, exited = 0;
	for (;;) {
		struct pollfd pfd[5] = {
			{ .fd = sfd, .events = POLLIN },
			{ .fd = sv[0], .events = POLLIN },
			{ .fd = master, .events = POLLIN },
			{ .fd = exited ? -1 : in_fd, .events = POLLIN },
			{ .fd = master >= 0 ? resize_fd : -1, .events = POLLIN },
		};
		if (exited && master < 0)
			break;
		int r = poll(pfd, 5, exited ? 200 : -1);
		if (r < 0 && errno != EINTR)
			die("poll: %s", strerror(errno));
		if (r == 0 && exited)
			break;
		char buf[4096];
		ssize_t n;
		if (pfd[4].revents) {
			n = read(resize_fd, resize_buf + resize_len, sizeof resize_buf - 1 - resize_len);
			if (n <= 0) {
				close(resize_fd);
				resize_fd = -1;
			} else {
				resize_len += (size_t)n;
				resize_buf[resize_len] = 0;
				char *nl;
				while ((nl = memchr(resize_buf, '\n', resize_len))) {
					unsigned rows, cols;
					*nl = 0;
					if (sscanf(resize_buf, "%u %u", &rows, &cols) == 2 && rows > 0 && rows <= 65535 && cols > 0 && cols <= 65535 && master >= 0) {
						struct winsize ws = { .ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols };
						ioctl(master, TIOCSWINSZ, &ws);
					}
					resize_len -= (size_t)(nl + 1 - resize_buf);
					memmove(resize_buf, nl + 1, resize_len);
				}
				if (resize_len == sizeof resize_buf - 1)
					resize_len = 0; /* no newline in a full buffer: not a size line */
			}
		}
		if (pfd[1].revents) {
			struct msg m;
			int passed;
			n = recv_msg(sv[0], &m, &passed, MSG_DONTWAIT);
			if (n == (ssize_t)sizeof m && m.type == MSG_ERROR)
				snprintf(error, sizeof error, "%s", m.text);
			else if (n <= 0) {
				close(sv[0]);
				sv[0] = -1;
			}
		}
		if (pfd[2].revents) {
			n = read(master, buf, sizeof buf);
			if (n > 0)
				write_all(1, buf, (size_t)n);
			else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
				close(master);
				master = -1;
			}
		}
		if (pfd[3].revents) {
			n = read(in_fd, buf, sizeof buf);
			if (n > 0 && master >= 0)
				write_all(master, buf, (size_t)n);
			else if (n <= 0)
				in_fd = -1;
		}
		if (pfd[0].revents) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
				if ((int)si.ssi_signo == SIGWINCH && master >= 0) {
					struct winsize ws;
					if (ioctl(0, TIOCGWINSZ, &ws) == 0)
						ioctl(master, TIOCSWINSZ, &ws);
				} else if ((int)si.ssi_signo != SIGCHLD) {
					kill(pid, (int)si.ssi_signo);
				}
			}
			int st;
			if (!exited && waitpid(pid, &st, WNOHANG) == pid) {
				status = st;
				exited = 1;
			}
		}
	}
	if (!exited)
		waitpid(pid, &status, 0);
	restore_tty();
	tty_saved = 0;
	if (error[0]) {
		fprintf(stderr, "berth-helper: %s\n", error);
		return 127;
	}
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return 255;
}

/* Detaches from the caller: P waits for S's report, S1 exits at once. */
static int detach_and_supervise(void)
{
	int rp[2];
	if (pipe2(rp, O_CLOEXEC) < 0)
		die("pipe: %s", strerror(errno));
	pid_t s1 = fork();
	if (s1 < 0)
		die("fork: %s", strerror(errno));
	if (s1 == 0) {
		close(rp[0]);
		if (setsid() < 0)
			_exit(1);
		pid_t s = fork();
		if (s < 0)
			_exit(1);
		if (s > 0)
			_exit(0);
		/* S: away from the agent's stdio and cwd; diagnostics to shim.log. */
		report_fd = rp[1];
		char logp[PATH_MAX];
		snprintf(logp, sizeof logp, "%s/shim.log", spec.state_dir);
		int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
		int lf = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (nul >= 0) {
			dup2(nul, 0);
			dup2(nul, 1);
			close(nul);
		}
		if (lf >= 0) {
			dup2(lf, 2);
			close(lf);
		}
		if (chdir("/") < 0)
			_exit(1);
		signal(SIGPIPE, SIG_IGN);
		exit(shim_main(0));
	}
	close(rp[1]);
	int st;
	waitpid(s1, &st, 0);
	char buf[600];
	size_t len = 0;
	ssize_t n;
	while (len < sizeof buf - 1 && (n = read(rp[0], buf + len, sizeof buf - 1 - len)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		len += (size_t)n;
	}
	buf[len] = 0;
	if (len == 0) {
		printf("error the shim exited without reporting (see %s/shim.log)\n", spec.state_dir);
		return 1;
	}
	fputs(buf, stdout);
	return strncmp(buf, "ok ", 3) == 0 ? 0 : 1;
}

enum { SPAWN_SHIM, SPAWN_MOUNT, SPAWN_UMOUNT };

/*
 * "mount" request: "<dir>\0<target>\0<overlay options>" (no terminating NUL
 * needed). Mounts an overlay at target (absolute) with options whose lower,
 * upper and work paths are relative to dir, as `cd dir && mount -t overlay
 * overlay -o OPTIONS target` does. The options were checked by the caller
 * (agent/sys/overlay.ts: no ",", ":" or newlines in paths, under a page).
 * Runs in a forked child so the spawner's own directory never changes.
 * Prints "error <message>" on failure; returns the exit status.
 */
static int spawner_mount(const char *buf, size_t len)
{
	const char *f[3];
	size_t at = 0;
	for (int i = 0; i < 3; i++) {
		f[i] = buf + at;
		const char *nul = memchr(buf + at, 0, len - at);
		if (i < 2 && !nul) {
			printf("error mount request: expected \"dir\\0target\\0options\"\n");
			return 2;
		}
		at = nul ? (size_t)(nul - buf) + 1 : len;
	}
	size_t optlen = len - (size_t)(f[2] - buf);
	if (memchr(f[2], 0, optlen))
		optlen = strlen(f[2]);
	char opts[4096];
	if (optlen >= sizeof opts || f[1][0] != '/' || f[0][0] != '/') {
		printf("error mount request: expected absolute paths and options under 4096 bytes\n");
		return 2;
	}
	memcpy(opts, f[2], optlen);
	opts[optlen] = 0;
	fflush(stdout);
	pid_t p = fork();
	if (p < 0) {
		printf("error mount: fork: %s\n", strerror(errno));
		return 1;
	}
	if (p == 0) {
		if (chdir(f[0]) < 0) {
			printf("error mount: chdir \"%s\": %s\n", f[0], strerror(errno));
			fflush(stdout);
			_exit(1);
		}
		if (mount("overlay", f[1], "overlay", 0, opts) < 0) {
			printf("error mount overlay on \"%s\": %s\n", f[1], strerror(errno));
			fflush(stdout);
			_exit(1);
		}
		_exit(0);
	}
	int st = 0;
	while (waitpid(p, &st, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 255;
}

/* "umount" request: "<target>" (absolute). Detaches it (MNT_DETACH, as umount -l). */
static int spawner_umount(const char *buf, size_t len)
{
	char target[PATH_MAX];
	if (len >= sizeof target || buf[0] != '/' || memchr(buf, 0, len)) {
		printf("error umount request: expected one absolute path\n");
		return 2;
	}
	memcpy(target, buf, len);
	target[len] = 0;
	if (umount2(target, MNT_DETACH | UMOUNT_NOFOLLOW) < 0) {
		printf("error umount \"%s\": %s\n", target, strerror(errno));
		return 1;
	}
	return 0;
}

/*
 * spawner: a long-lived helper the agent keeps so a container start costs a
 * fork instead of Node spawning a process. Requests on stdin:
 * "<length>\n<spec bytes>"; for each it forks P, which does what the "shim"
 * role does (its stdout and stderr both go to the spawner's stdout: the
 * "ok ..."/"error ..." line or a spec error), and then it writes
 * "done <P's exit status>\n". Also "mount <length>\n<request>" and
 * "umount <length>\n<target>" (spawner_mount, spawner_umount): the agent's
 * overlay mounts without running mount(8). One request at a time. Exits at
 * end of input.
 */
static int spawner_main(void)
{
	signal(SIGPIPE, SIG_IGN);
	for (;;) {
		char hdr[32];
		size_t h = 0;
		for (;;) {
			ssize_t n = read(0, hdr + h, 1);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return 0;
			if (hdr[h] == '\n' || ++h == sizeof hdr - 1)
				break;
		}
		hdr[h] = 0;
		int op = SPAWN_SHIM;
		const char *num = hdr;
		if (!strncmp(hdr, "mount ", 6)) {
			op = SPAWN_MOUNT;
			num = hdr + 6;
		} else if (!strncmp(hdr, "umount ", 7)) {
			op = SPAWN_UMOUNT;
			num = hdr + 7;
		}
		char *endp;
		unsigned long len = strtoul(num, &endp, 10);
		if (*endp || len == 0 || len > SPEC_MAX)
			die("spawner: bad request header \"%s\"", hdr);
		char *buf = malloc(len);
		if (!buf)
			die("out of memory");
		for (size_t got = 0; got < len;) {
			ssize_t n = read(0, buf + got, len - got);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return 0;
			got += (size_t)n;
		}
		if (op != SPAWN_SHIM) {
			int code = op == SPAWN_MOUNT ? spawner_mount(buf, len) : spawner_umount(buf, len);
			free(buf);
			printf("done %d\n", code);
			fflush(stdout);
			continue;
		}
		fflush(stdout);
		pid_t p = fork();
		if (p < 0)
			die("spawner: fork: %s", strerror(errno));
		if (p == 0) {
			dup2(1, 2);
			close(0);
			parse_spec(buf, len);
			if (!spec.state_dir || !spec.rootfs)
				die("spec: state and rootfs are required");
			exit(detach_and_supervise());
		}
		free(buf);
		int st = 0;
		while (waitpid(p, &st, 0) < 0 && errno == EINTR)
			;
		printf("done %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : 255);
		fflush(stdout);
	}
}

int main(int argc, char **argv)
{
	if (argc < 2)
		die("usage: berth-helper shim|run|exec|spawner|fsops|version ... (the spec on fd 3)");
	const char *role = argv[1];
	force_walk = getenv("BERTH_HELPER_NO_OPENAT2") != NULL;
	if (!strcmp(role, "version")) {
		puts(SPEC_MAGIC);
		return 0;
	}
	if (!strcmp(role, "fsops")) {
		if (!berth_fsops_main) {
			fputs("berth-helper: fsops not built\n", stderr);
			return 2;
		}
		return berth_fsops_main(argc - 1, argv + 1);
	}
	if (!strcmp(role, "spawner"))
		return spawner_main();
	if (!strcmp(role, "exec")) {
		read_spec(3);
		close(3);
		return exec_main();
	}
	if (!strcmp(role, "shim") || !strcmp(role, "run")) {
		read_spec(3);
		close(3);
		if (!spec.state_dir || !spec.rootfs)
			die("spec: state and rootfs are required");
		if (!strcmp(role, "run"))
			return shim_main(1);
		return detach_and_supervise();
	}
	die("unknown role \"%s\" (expected shim, run, exec, spawner, fsops or version)", role);
}
